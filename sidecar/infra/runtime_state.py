"""Settings changed at run time, kept in the state directory (`runtime.json`) rather than in the
user's config.toml: which providers were switched on or off (`set_provider_enabled`) and the custom
endpoints set with `endpoint_set`. They are applied over config.toml at start and at every reload:
a run-time choice beats the file's until it is changed again at run time.

The file is written whole to a temporary file and renamed, so a crash leaves the old or the new
version, never half of one. A damaged file is logged and read as empty.

Must not know: the protocol, providers, what an endpoint's fields mean.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import msgspec

from sidecar import logs

FILE_NAME: Final = "runtime.json"
_log = logs.get_logger("runtime_state")


class _Stored(msgspec.Struct, omit_defaults=True):
    enabled: dict[str, bool] = msgspec.field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class RuntimeState:
    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self._stored = self._read()

    @property
    def enabled(self) -> dict[str, bool]:
        return self._stored.enabled

    @property
    def endpoints(self) -> dict[str, dict[str, Any]]:
        return self._stored.endpoints

    def set_enabled(self, provider: str, enabled: bool) -> None:
        self._stored.enabled[provider] = enabled
        self._write()

    def set_endpoint(self, name: str, fields: dict[str, Any]) -> None:
        self._stored.endpoints[name] = fields
        self._write()

    def delete_endpoint(self, name: str) -> bool:
        found = self._stored.endpoints.pop(name, None) is not None
        self._stored.enabled.pop(name, None)
        if found:
            self._write()
        return found

    def _read(self) -> _Stored:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=_Stored)
        except FileNotFoundError:
            return _Stored()
        except (OSError, msgspec.DecodeError) as exc:
            _log.warning("runtime settings unreadable, ignored", path=str(self.path), error=str(exc))
            return _Stored()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(msgspec.json.format(msgspec.json.encode(self._stored), indent=2))
        os.replace(tmp, self.path)
