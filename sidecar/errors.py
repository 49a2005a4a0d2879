"""The one error tree of the sidecar, and the only place error kinds are named.

    Exception
    ├── ProtocolError            a JSON-RPC fault in the envelope itself (-32700, -32600, -32601, -32602)
    └── SidecarError             a failure a host can act on: stable `kind`, a sentence for a person
        └── ProviderError        an upstream answered badly: keeps provider, HTTP status, Retry-After,
                                 upstream request id

Every SidecarError travels to the host as `error.data = {kind, message, provider?, retry_after_s?, ...}`.
Messages are built from typed fields (status codes, provider names, upstream messages already passed
through redaction), never from raw exception text, so a key in a URL or header can't leak.

Must not know: JSON-RPC framing, providers' wire formats, I/O.
"""

from __future__ import annotations

from typing import Final, Literal, cast

from sidecar.redact import redact
from sidecar.wire.base import ErrorData

# Re-exported: the one parser of msgspec's error paths lives with the wire types.
from sidecar.wire.invalid import field_path as field_path

ErrorKind = Literal[
    "invalid_request",
    "missing_key",
    "auth_failed",
    "rate_limited",
    "quota_exceeded",
    "model_not_found",
    "unsupported_provider",
    "provider_error",
    "network_error",
    "timeout",
    "budget_exceeded",
    "keychain_unavailable",
    "ollama_unavailable",
    "oauth_failed",
    "overloaded",
    "provider_disabled",
    "cancelled",
    "internal_error",
    "coordination_unavailable",
    "storage_unavailable",
]

# JSON-RPC codes. Protocol faults use the standard ones; every other kind has a stable code of its
# own outside the JSON-RPC reserved range (-32768..-32000), as MCP asks of new codes. Hosts should
# switch on `data.kind`; the numbers exist so generic JSON-RPC clients see distinct codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
REQUEST_CANCELLED: Final = -32800

KIND_CODES: Final[dict[str, int]] = {
    "invalid_request": INVALID_PARAMS,
    "cancelled": REQUEST_CANCELLED,
    "internal_error": INTERNAL_ERROR,
    "missing_key": 1001,
    "auth_failed": 1002,
    "rate_limited": 1003,
    "quota_exceeded": 1004,
    "model_not_found": 1005,
    "unsupported_provider": 1006,
    "provider_error": 1007,
    "network_error": 1008,
    "timeout": 1009,
    "budget_exceeded": 1010,
    "keychain_unavailable": 1011,
    "ollama_unavailable": 1012,
    "oauth_failed": 1013,
    "coordination_unavailable": 1014,
    "storage_unavailable": 1015,
    "overloaded": 1016,
    "provider_disabled": 1017,
}

# Kinds that a retry or a fallback to another provider can cure.
TRANSIENT_KINDS: Final = frozenset({"rate_limited", "provider_error", "network_error", "timeout"})


class ProtocolError(Exception):
    """A fault in the JSON-RPC envelope: answered with a standard code, no `kind` semantics."""

    def __init__(self, code: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class SidecarError(Exception):
    """A failure with a stable kind and a message a person can act on."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        provider: str | None = None,
        retry_after_s: float | None = None,
        field: str | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.provider = provider
        self.retry_after_s = retry_after_s
        self.field = field
        self.details = details or {}

    @property
    def code(self) -> int:
        return KIND_CODES[self.kind]

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind!r}, {self.message!r})"

    def data(self) -> ErrorData:
        """The wire form: `error.data` of an RPC error, or the `error` carried inside a result."""
        return ErrorData(
            kind=self.kind,
            message=self.message,
            provider=self.provider,
            retry_after_s=self.retry_after_s,
            field=self.field,
            details=self.details or None,
        )


class ProviderError(SidecarError):
    """An upstream failure, mapped to a kind at the provider boundary.

    Everything it carries may come from an upstream (an error body, a header, an error event), so
    this is the one place where all of it is redacted: the message, every string anywhere in
    `details`, and the upstream request id. Nothing of an upstream's reaches the host, the logs or
    the database except through a `ProviderError`.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        retry_after_s: float | None = None,
        upstream_request_id: str | None = None,
        details: dict[str, object] | None = None,
        final: bool = False,
        refused_param: str | None = None,
    ) -> None:
        super().__init__(
            kind,
            redact(message),
            provider=provider,
            retry_after_s=retry_after_s,
            details=cast(dict[str, object], _redacted(details)) if details else None,
        )
        self.status = status
        self.upstream_request_id = redact(upstream_request_id) if upstream_request_id else None
        # Retrying cannot help (an answer over the size caps would be as large again), and the
        # provider did answer: no retry, and no failure counted against it.
        self.final = final
        # The request parameter a 400 named as the one it refused (`stream`, `temperature`...).
        self.refused_param = refused_param

    @property
    def streaming_refused(self) -> bool:
        """The upstream refused to stream this request and would answer it whole."""
        return self.refused_param == "stream"

    def data(self) -> ErrorData:
        data = super().data()
        data.status = self.status
        return data


def _redacted(value: object, depth: int = 0) -> object:
    """`value` with every string in it (keys included) passed through `redact`; bounded in depth."""
    if isinstance(value, str):
        return redact(value)
    if depth > 16:
        return None
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, depth + 1) for v in value]
    return value


def invalid_request(message: str, *, field: str | None = None) -> SidecarError:
    return SidecarError("invalid_request", message, field=field)
