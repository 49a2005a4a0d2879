"""Changing the provider set while running: switching providers on and off, custom endpoints set
and removed (`set_provider_enabled`, `endpoint_set`, `endpoint_delete`), and config.toml read again
when it changes on disk.

Run-time changes are kept in the state directory (`infra.runtime_state`), never written into the
user's config.toml, and beat the file's settings. A reload that fails keeps the configuration in
force, says why on stderr and sends a `config/error` notification.

Must not know: stdin/stdout, providers' wire formats, how services are wired (`apply` does that).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from sidecar import logs
from sidecar.config import BUILTIN_PROVIDERS, Config, ConfigError, Endpoint, endpoint_problem, load
from sidecar.errors import SidecarError
from sidecar.infra.audit import Audit
from sidecar.infra.runtime_state import RuntimeState
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext, Handler
from sidecar.wire.admin import (
    ConfigErrorParams,
    EndpointDeleteParams,
    EndpointDeleteResult,
    EndpointSetParams,
    EndpointSetResult,
    SetProviderEnabledParams,
    SetProviderEnabledResult,
)

_log = logs.get_logger("admin")


class AdminService:
    def __init__(
        self,
        providers: ProviderRegistry,
        runtime: RuntimeState,
        audit: Audit,
        *,
        file_config: Config,
        apply: Callable[[Config], None],
        config_path: Path | None = None,
        broadcast: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.providers = providers
        self.runtime = runtime
        self.audit = audit
        self.file_config = file_config
        self._apply = apply
        self.config_path = config_path
        self._broadcast = broadcast

    def handlers(self) -> dict[str, Handler]:
        return {
            "set_provider_enabled": self.set_provider_enabled,
            "endpoint_set": self.endpoint_set,
            "endpoint_delete": self.endpoint_delete,
        }

    async def set_provider_enabled(
        self, params: SetProviderEnabledParams, ctx: CallContext
    ) -> SetProviderEnabledResult:
        previous = self.providers.enabled(params.provider)  # unknown provider -> unsupported_provider
        self.runtime.set_enabled(params.provider, params.enabled)
        self.providers.enabled_overrides[params.provider] = params.enabled
        await self.audit.record(
            "provider_enabled" if params.enabled else "provider_disabled", params.provider, "ok"
        )
        _log.info("provider switched", provider=params.provider, enabled=params.enabled)
        return SetProviderEnabledResult(provider=params.provider, enabled=params.enabled, previous=previous)

    async def endpoint_set(self, params: EndpointSetParams, ctx: CallContext) -> EndpointSetResult:
        if params.name in BUILTIN_PROVIDERS:
            raise SidecarError(
                "invalid_request",
                f"'{params.name}' is a built-in provider id; choose another name for the endpoint.",
                field="name",
            )
        fields = msgspec.to_builtins(params)
        fields.pop("name")
        endpoint = msgspec.convert(fields, Endpoint)
        problem = endpoint_problem(endpoint)
        if problem:
            raise SidecarError("invalid_request", f"base_url: {problem}", field="base_url")
        created = params.name not in self.providers.specs
        self.runtime.set_endpoint(params.name, fields)
        self._apply(self.file_config)
        await self.audit.record("endpoint_set", params.name, "created" if created else "replaced")
        return EndpointSetResult(name=params.name, created=created, base_url=endpoint.base_url)

    async def endpoint_delete(self, params: EndpointDeleteParams, ctx: CallContext) -> EndpointDeleteResult:
        if params.name in BUILTIN_PROVIDERS:
            raise SidecarError(
                "invalid_request",
                f"'{params.name}' is a built-in provider; switch it off with set_provider_enabled instead.",
                field="name",
            )
        deleted = self.runtime.delete_endpoint(params.name)
        self.providers.enabled_overrides.pop(params.name, None)
        in_file = params.name in self.file_config.endpoints
        if not deleted and not in_file:
            raise SidecarError(
                "unsupported_provider",
                f"No endpoint named '{params.name}' was set at run time.",
                provider=params.name,
                field="name",
            )
        self._apply(self.file_config)
        await self.audit.record("endpoint_deleted", params.name, "ok" if deleted else "absent")
        return EndpointDeleteResult(name=params.name, deleted=deleted, still_in_config=in_file)

    # --- config.toml on disk ---------------------------------------------------------------------

    async def reload_from_disk(self) -> bool:
        """Read config.toml again; True when the new configuration is in force."""
        if self.config_path is None:
            return False
        try:
            config, _ = load(self.config_path)
        except ConfigError as exc:
            _log.error("config.toml not reloaded, the previous configuration stays", error=str(exc))
            if self._broadcast is not None:
                self._broadcast(
                    "config/error", ConfigErrorParams(path=str(self.config_path), message=str(exc))
                )
            await self.audit.record("config_reloaded", None, "error", str(exc)[:200])
            return False
        self.file_config = config
        self._apply(config)
        _log.info("config.toml reloaded", path=str(self.config_path))
        await self.audit.record("config_reloaded", None, "ok")
        return True
