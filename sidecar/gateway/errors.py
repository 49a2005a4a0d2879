"""Errors as the gateway answers them: an HTTP status per error kind, and the body in the shape
each official SDK parses (OpenAI `{"error": {message, type, param, code}}`, Anthropic
`{"type": "error", "error": {type, message}}`).

Pure: no I/O.

Must not know: providers' wire formats, how the services decide an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from sidecar.errors import SidecarError

Dialect = Literal["openai", "anthropic"]

STATUS_BY_KIND: Final[dict[str, int]] = {
    "invalid_request": 400,
    "auth_failed": 502,  # the upstream refused the gateway's provider key: not the client's fault
    "missing_key": 503,  # no provider key configured behind the gateway
    "keychain_unavailable": 503,
    "rate_limited": 429,
    "quota_exceeded": 429,
    "budget_exceeded": 429,
    "model_not_found": 404,
    "unsupported_provider": 404,
    "provider_error": 502,
    "network_error": 503,
    "ollama_unavailable": 503,
    "storage_unavailable": 503,  # a team gateway's PostgreSQL away
    "coordination_unavailable": 503,  # a team gateway's Redis away (on_unavailable = "refuse")
    "overloaded": 503,  # the gateway's own pools (upstream connections, PostgreSQL) are all busy
    "provider_disabled": 503,  # the user switched the provider off
    "timeout": 504,
    "oauth_failed": 502,
    "cancelled": 499,
    "internal_error": 500,
}

_OPENAI_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


class InvalidRequest(ValueError):
    """A request a route cannot translate into the sidecar's params: the message says why,
    `param` which field (answered as a 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class HttpError(Exception):
    """A refusal of the gateway itself (bad key, model not allowed, body too large, bad JSON)."""

    status: int
    code: str
    message: str
    retry_after_s: float | None = None
    param: str | None = None


def from_sidecar(exc: SidecarError) -> HttpError:
    status = STATUS_BY_KIND.get(exc.kind, 500)
    if exc.kind in ("invalid_request", "unsupported_provider") and exc.field == "model":
        status = 404  # a model the gateway cannot place is an unknown model to an HTTP client
    retry = exc.retry_after_s
    if retry is None and status == 429:
        retry = 60.0
    if retry is None and exc.kind == "overloaded":
        retry = 1.0  # a busy pool frees up within moments; the SDKs retry a 503 after Retry-After
    return HttpError(status, exc.kind, exc.message, retry, exc.field)


def headers(err: HttpError) -> list[tuple[bytes, bytes]]:
    out = [(b"content-type", b"application/json")]
    if err.retry_after_s is not None:
        out.append((b"retry-after", str(max(1, math.ceil(err.retry_after_s))).encode()))
    return out


def body(err: HttpError, dialect: Dialect, request_id: str) -> dict[str, Any]:
    if dialect == "anthropic":
        kind = _ANTHROPIC_TYPES.get(err.status, "api_error" if err.status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": err.message}, "request_id": request_id}
    kind = _OPENAI_TYPES.get(err.status, "server_error" if err.status >= 500 else "invalid_request_error")
    return {"error": {"message": err.message, "type": kind, "param": err.param, "code": err.code}}
