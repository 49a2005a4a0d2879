"""Structured JSON logs on stderr, with the request id on every line and secrets masked.

structlog costs 60-100 ms to import, so it is imported on the first line actually emitted at or
above the configured level, never at start-up. Every string value passes through
`redact.redact`, so a key that reached a log call is masked anyway. Message content (prompts,
answers) is never logged at info level; callers log sizes and counts instead.

Must not know: the protocol, providers, where the level comes from.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType
from typing import Any, Final, TextIO

from sidecar.redact import redact

LEVELS: Final = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("sidecar_log", default=_EMPTY)
_state: dict[str, Any] = {"level": LEVELS["info"], "level_name": "info", "stream": None, "backend": None}


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Set the threshold; nothing is imported until a line is emitted."""
    _state["level"] = LEVELS.get(level.lower(), LEVELS["info"])
    _state["level_name"] = level.lower() if level.lower() in LEVELS else "info"
    _state["stream"] = stream
    _state["backend"] = None


def level_name() -> str:
    name: str = _state["level_name"]  # kept by `configure`: `info` reports it on every call
    return name


class bound:
    """Bind values (a request id, a method) to every line logged inside the block, task-locally.

    A class, not a generator: it is entered once per request."""

    __slots__ = ("_token", "_values")

    def __init__(self, **values: Any) -> None:
        self._values = values

    def __enter__(self) -> None:
        self._token = _context.set({**_context.get(), **self._values})

    def __exit__(self, *exc: object) -> None:
        _context.reset(self._token)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _add_context(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in _context.get().items():
        event.setdefault(key, value)
    return event


def _redact_all(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {key: _scrub(value) for key, value in event.items()}


def _backend() -> Any:
    backend = _state["backend"]
    if backend is None:
        import structlog

        stream = _state["stream"] or sys.stderr
        backend = structlog.wrap_logger(
            structlog.PrintLogger(stream),
            processors=[
                _add_context,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                _redact_all,
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )
        _state["backend"] = backend
    return backend


class Logger:
    """A logger named after its module; cheap to create and to call below the threshold."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _emit(self, level: str, event: str, values: dict[str, Any]) -> None:
        if LEVELS[level] < _state["level"]:
            return
        with contextlib.suppress(Exception):
            getattr(_backend(), level)(event, logger=self.name, **values)

    def debug(self, event: str, **values: Any) -> None:
        self._emit("debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        self._emit("info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        self._emit("warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        self._emit("error", event, values)

    def exception(self, event: str, **values: Any) -> None:
        self._emit("error", event, {**values, "exc_info": True})

    def enabled(self, level: str) -> bool:
        return bool(LEVELS[level] >= _state["level"])


def get_logger(name: str) -> Logger:
    return Logger(name)
