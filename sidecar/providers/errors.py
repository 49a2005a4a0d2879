"""The one boundary where upstream failures become `ProviderError`s with a contract kind.

Every provider's error body shape is read here: OpenAI's `{"error": {message, type, code}}`,
Anthropic's `{"type": "error", "error": {type, message}}`, Google's `{"error": {code, status,
message, details: [ErrorInfo, RetryInfo...]}}`, xAI's flat `{"code", "error"}`, OpenRouter's numeric
`error.code` with `metadata`, and Ollama's `{"error": "..."}`. Upstream messages pass through
redaction when the `ProviderError` is built (OpenAI echoes part of a bad key).

Must not know: HTTP clients, the protocol, keys.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from sidecar.core.ratelimit import parse_retry_after
from sidecar.errors import ErrorKind, ProviderError
from sidecar.redact import redact

DISPLAY_NAMES: Final = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "gemini": "Gemini",
    "xai": "xAI",
    "openrouter": "OpenRouter",
    "ollama": "Ollama",
}

_ANTHROPIC_TYPES: Final[dict[str, ErrorKind]] = {
    "authentication_error": "auth_failed",
    "permission_error": "auth_failed",
    "not_found_error": "model_not_found",
    "rate_limit_error": "rate_limited",
    "overloaded_error": "provider_error",
    "api_error": "provider_error",
    "timeout_error": "timeout",
    "billing_error": "quota_exceeded",
    "request_too_large": "invalid_request",
    "invalid_request_error": "invalid_request",
}

_QUOTA_HINTS: Final = re.compile(
    r"insufficient_quota|exceeded your current quota|credit balance is too low|out of credits|"
    r"run out of credits|used all available credits|insufficient credits",
    re.I,
)
_BAD_KEY: Final = re.compile(
    r"api[ _-]?key.{0,40}(invalid|incorrect|not valid)|(invalid|incorrect).{0,20}api[ _-]?key", re.I
)
_DURATION: Final = re.compile(r"^\s*([0-9]*\.?[0-9]+)s\s*$")
# Ollama fails a pull of an unknown name, or a chat with a model it lost, inside a 200 stream.
_MODEL_MISSING: Final = re.compile(r"model\b.{0,80}\bnot found|file does not exist|manifest unknown", re.I)


def display(provider: str) -> str:
    return DISPLAY_NAMES.get(provider, provider)


class UpstreamError(msgspec.Struct, frozen=True):
    """What an error body said, whatever its shape."""

    message: str | None = None
    type: str | None = None
    code: str | None = None
    status_text: str | None = None
    reason: str | None = None
    retry_delay_s: float | None = None
    param: str | None = None  # the request field it is about (OpenAI's `param`)


def parse_duration_s(text: str) -> float | None:
    """Google's `"34.4s"` durations."""
    match = _DURATION.match(text)
    return float(match.group(1)) if match else None


def read_error_body(body: bytes | Any) -> UpstreamError:
    """Understand any provider's error body (bytes or an already-decoded object)."""
    if isinstance(body, bytes | bytearray):
        try:
            data: Any = msgspec.json.decode(body)
        except msgspec.DecodeError:
            text = body.decode("utf-8", "replace").strip()
            return UpstreamError(message=text[:300] or None)
    else:
        data = body
    if not isinstance(data, dict):
        return UpstreamError()
    err = data.get("error")
    if isinstance(err, str):  # Ollama, xAI flat
        code = data.get("code")
        return UpstreamError(
            message=err, code=str(code) if code is not None else None, param=_named_param(err)
        )
    if not isinstance(err, dict):
        msg = data.get("message") or data.get("detail")
        return UpstreamError(message=str(msg) if msg else None)
    reason = None
    retry = None
    for detail in err.get("details") or []:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("ErrorInfo") and detail.get("reason"):
            reason = str(detail["reason"])
        elif kind.endswith("RetryInfo") and isinstance(detail.get("retryDelay"), str):
            retry = parse_duration_s(detail["retryDelay"])
    param = err.get("param")
    metadata = err.get("metadata")
    if isinstance(metadata, dict):
        reason = reason or (str(metadata["error_type"]) if metadata.get("error_type") else None)
        raw = metadata.get("raw")
        param = param or _raw_param(raw)
        message = str(err.get("message") or "")
        if isinstance(raw, str) and raw and raw not in message:
            message = f"{message}: {raw}" if message else raw
        err = {**err, "message": message}
    code = err.get("code")
    if not param and isinstance(err.get("message"), str):
        param = _named_param(err["message"])
    return UpstreamError(
        message=str(err["message"]) if err.get("message") else None,
        type=str(err["type"]) if err.get("type") else None,
        code=str(code) if code is not None else None,
        status_text=str(err["status"]) if err.get("status") else None,
        reason=reason,
        retry_delay_s=retry,
        param=param if isinstance(param, str) and param else None,
    )


# Where an upstream names the refused parameter only in its message: xAI, in camelCase ("Argument
# not supported on this model: stop", "Model grok-4.5 does not support parameter
# presencePenalty."); Anthropic's newer models, which take `temperature` or `top_p` but not both
# ("`temperature` and `top_p` cannot both be specified for this model"): `top_p` is left out.
_PARAM_IN_MESSAGE: Final = re.compile(
    r"(?:not supported on this model: |does not support parameter )([A-Za-z_]+)"
    r"|`temperature` and `(top_p)` cannot both be specified"
)


def _named_param(message: str) -> str | None:
    """The request parameter an error message says was refused, as the request names it."""
    found = _PARAM_IN_MESSAGE.search(message)
    if found is None:
        return None
    name = found.group(1) or found.group(2)
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


def _raw_param(raw: object) -> object:
    """The `param` of the upstream's own error that OpenRouter passes on as text in `raw`."""
    if not isinstance(raw, str) or '"param"' not in raw:
        return None
    try:
        inner = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    err = inner.get("error") if isinstance(inner, dict) else None
    return err.get("param") if isinstance(err, dict) else None


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """`retry-after-ms` (float ms) first, then `retry-after` (seconds or an HTTP date)."""
    return parse_retry_after(headers, time.time() if now is None else now)


def _is_bad_key(err: UpstreamError) -> bool:
    # Gemini and xAI answer a bad key with 400, not 401.
    return (
        err.reason == "API_KEY_INVALID"
        or err.code == "invalid_api_key"
        or bool(_BAD_KEY.search(err.message or ""))
    )


def classify(status: int, err: UpstreamError, *, chat: bool = True, provider: str = "") -> ErrorKind:
    """The contract kind of an upstream failure; `status` 0 means an error event inside a stream.

    Ollama answers 404 both for a model it lacks (its JSON `model 'x' not found`) and for a route it
    lacks (an Ollama-compatible server without `/api/chat`, a proxy): only the first is
    `model_not_found`; the second is the server's problem, not the model's."""
    text = " ".join(x for x in (err.message, err.type, err.code, err.reason, err.status_text) if x)
    quota_said = bool(_QUOTA_HINTS.search(text))
    if status == 0:
        if err.type in _ANTHROPIC_TYPES:
            return _ANTHROPIC_TYPES[err.type]
        if err.code is not None and err.code.isdigit() and int(err.code) >= 400:
            return classify(int(err.code), err, chat=chat)
        if _MODEL_MISSING.search(err.message or ""):
            return "model_not_found"
        return "quota_exceeded" if quota_said else "provider_error"
    if status == 401:
        return "auth_failed"
    if status == 402:
        return "quota_exceeded"
    if status == 403:
        return "quota_exceeded" if quota_said else "auth_failed"
    if status == 400:
        if _is_bad_key(err):
            return "auth_failed"
        return "quota_exceeded" if quota_said else "invalid_request"
    if status == 404:
        if provider == "ollama" and not _MODEL_MISSING.search(err.message or ""):
            return "provider_error"
        return "model_not_found" if chat else "invalid_request"
    if status == 429:
        if "insufficient_quota" in text:
            return "quota_exceeded"
        # Google words per-minute limits as "quota" too, but sends RetryInfo when waiting helps.
        return "quota_exceeded" if quota_said and err.retry_delay_s is None else "rate_limited"
    if status in (408, 504):
        return "timeout"
    if status >= 500:
        return "provider_error"
    return "invalid_request"


_ADVICE: Final[dict[str, str]] = {
    "auth_failed": "Check the key with validate_key, or store a new one with set_key.",
    "rate_limited": "Wait and retry, or lower the request rate.",
    "quota_exceeded": "Add credit or raise the spending limit in the provider's console.",
    "model_not_found": "Check the model name with list_models.",
    "provider_error": "The provider had a problem; retrying later usually helps.",
    "timeout": "The provider took too long; retry, or raise timeout_s.",
    "invalid_request": "Fix the request as the provider says.",
}
_PROVIDER_ADVICE: Final[dict[tuple[str, str], str]] = {
    ("ollama", "model_not_found"): "Download it with ollama_pull, or pick an installed one from ollama_list.",
    ("ollama", "provider_error"): "Ollama had a problem; its server log (`ollama serve` output) says more.",
}


def provider_error(
    provider: str,
    status: int,
    body: bytes | Any,
    headers: Mapping[str, str] | None = None,
    *,
    chat: bool = True,
    kind: ErrorKind | None = None,
) -> ProviderError:
    """Map one upstream failure (an HTTP error, or an error event inside a stream) to the contract."""
    headers = headers or {}
    err = read_error_body(body)
    kind = kind or classify(status, err, chat=chat, provider=provider)
    retry = retry_after_s(headers)
    if retry is None:
        retry = err.retry_delay_s
    said = redact(err.message.strip()) if err.message else None
    if said and len(said) > 400:
        said = said[:400] + "…"
    where = f"HTTP {status}" if status else "in the stream"
    message = f"{display(provider)} answered {where}"
    message += f": {said.rstrip('.')}." if said else "."
    advice: str | None
    if status == 404 and kind == "provider_error":
        advice = "The server has no such route: check that the base URL points at an Ollama server."
    else:
        advice = _PROVIDER_ADVICE.get((provider, kind)) or _ADVICE.get(kind)
    if advice:
        message += f" {advice}"
    return ProviderError(
        kind,
        message,
        provider=provider,
        status=status or None,
        retry_after_s=retry,
        upstream_request_id=headers.get("x-request-id") or headers.get("request-id"),
        details={"upstream_type": err.type or err.status_text or err.reason}
        if (err.type or err.status_text or err.reason)
        else None,
        # A 400 that names a parameter: a model some accounts may not stream (OpenAI's o3 and gpt-5
        # for an organization that is not verified) is refused with one about `stream`, a reasoning
        # model with one about `temperature` or `top_p`; the same call without it is answered.
        refused_param=err.param if status == 400 and err.param else None,
    )
