"""The one upstream-error boundary: each provider's real failure bodies map to the contract's kinds,
keep Retry-After, and never carry a whole key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.providers.errors import parse_duration_s, provider_error, retry_after_s
from tests.fakes.anthropic import BOTH_KNOBS_REFUSED
from tests.fakes.openai_compat import OPENAI_STREAM_REFUSED

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

OPENAI_401 = {
    "error": {
        "message": "Incorrect API key provided: sk-abcdefghijklmnopqrstuvwxyz123456. You can find your API key at https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
CASES = [
    ("openai", 401, OPENAI_401, "auth_failed"),
    (
        "openai",
        429,
        {
            "error": {
                "message": "Rate limit reached for requests",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
        "rate_limited",
    ),
    (
        "openai",
        429,
        {
            "error": {
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
        "quota_exceeded",
    ),
    (
        "openai",
        500,
        {"error": {"message": "server error", "type": "server_error", "param": None, "code": None}},
        "provider_error",
    ),
    (
        "openai",
        404,
        {
            "error": {
                "message": "The model `gpt-9` does not exist",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_found",
            }
        },
        "model_not_found",
    ),
    (
        "anthropic",
        401,
        {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
        "auth_failed",
    ),
    (
        "anthropic",
        529,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        "provider_error",
    ),
    (
        "anthropic",
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "Your credit balance is too low to access the Anthropic API.",
            },
        },
        "quota_exceeded",
    ),
    (
        "gemini",
        400,
        {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
                ],
            }
        },
        "auth_failed",
    ),
    (
        "gemini",
        403,
        {"error": {"code": 403, "message": "Permission denied", "status": "PERMISSION_DENIED"}},
        "auth_failed",
    ),
    (
        "gemini",
        503,
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
        "provider_error",
    ),
    (
        "xai",
        400,
        {
            "code": "invalid-argument",
            "error": "Incorrect API key provided. You can obtain an API key from https://console.x.ai.",
        },
        "auth_failed",
    ),
    ("xai", 400, {"code": "invalid-argument", "error": "max_tokens must be positive"}, "invalid_request"),
    ("openrouter", 401, {"error": {"code": 401, "message": "No auth credentials found"}}, "auth_failed"),
    ("openrouter", 402, {"error": {"code": 402, "message": "Insufficient credits"}}, "quota_exceeded"),
    ("ollama", 404, {"error": "model 'llama9' not found"}, "model_not_found"),
    ("openai", 504, b"<html>Gateway Timeout</html>", "timeout"),
]


@pytest.mark.parametrize(("provider", "status", "body", "kind"), CASES)
def test_kinds(provider: str, status: int, body: object, kind: str) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    err = provider_error(provider, status, raw)
    assert err.kind == kind
    assert err.provider == provider and err.status == status
    assert err.message.endswith(".") and len(err.message) < 700


def test_gemini_retry_info_and_openrouter_retry_after() -> None:
    gemini = provider_error("gemini", 429, (FIXTURES / "gemini-429-error.json").read_bytes())
    assert gemini.kind == "rate_limited" and gemini.retry_after_s == pytest.approx(34.4)
    router = provider_error(
        "openrouter",
        429,
        (FIXTURES / "openrouter-429-error.response.json").read_bytes(),
        {"retry-after": "7"},
    )
    assert router.kind == "rate_limited" and router.retry_after_s == 7
    assert "temporarily rate-limited upstream" in router.message


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == pytest.approx(
        10.0
    )
    assert retry_after_s({}) is None
    assert parse_duration_s("34.4s") == 34.4 and parse_duration_s("soon") is None


def test_a_key_echoed_by_the_upstream_is_masked() -> None:
    err = provider_error("openai", 401, json.dumps(OPENAI_401).encode())
    assert "sk-abcdefghijklmnopqrstuvwxyz123456" not in err.message
    assert "sk-…3456" in err.message


def test_in_stream_errors() -> None:
    assert (
        provider_error(
            "anthropic", 0, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        ).kind
        == "provider_error"
    )
    assert (
        provider_error("openrouter", 0, {"error": {"code": 429, "message": "Rate limit exceeded"}}).kind
        == "rate_limited"
    )
    assert (
        provider_error("ollama", 0, {"error": "an error was encountered while running the model"}).kind
        == "provider_error"
    )
    assert "in the stream" in provider_error("openai", 0, {"error": {"message": "boom"}}).message


def test_a_parameter_named_only_in_the_message_is_read() -> None:
    stop = {
        "code": "Client specified an invalid argument",
        "error": "Argument not supported on this model: stop",
    }
    assert provider_error("xai", 400, stop).refused_param == "stop"
    penalty = {
        "code": "invalid-argument",
        "error": "Model grok-4.5 does not support parameter presencePenalty.",
    }
    assert provider_error("xai", 400, penalty).refused_param == "presence_penalty"
    assert (
        provider_error("xai", 400, {"code": "invalid-argument", "error": "Invalid request."}).refused_param
        is None
    )
    assert provider_error("ollama", 400, {"error": "model is required"}).refused_param is None
    both = {"type": "error", "error": {"type": "invalid_request_error", "message": BOTH_KNOBS_REFUSED}}
    assert provider_error("anthropic", 400, both).refused_param == "top_p"


def test_a_refusal_to_stream_is_told_apart_from_other_bad_requests() -> None:
    err = provider_error("openai", 400, OPENAI_STREAM_REFUSED)
    assert err.kind == "invalid_request" and err.streaming_refused
    assert "must be verified to stream" in err.message
    # OpenRouter passes the upstream's error on as text inside its own envelope.
    wrapped = {
        "error": {
            "code": 400,
            "message": "Provider returned error",
            "metadata": {"raw": json.dumps(OPENAI_STREAM_REFUSED), "provider_name": "OpenAI"},
        }
    }
    assert provider_error("openrouter", 400, wrapped).streaming_refused
    other_param = {"error": {**OPENAI_STREAM_REFUSED["error"], "param": "temperature"}}
    assert not provider_error("openai", 400, other_param).streaming_refused
    assert provider_error("openai", 400, other_param).refused_param == "temperature"
    # Only a 400 says the request itself was refused; a 500 naming `stream` is a server fault.
    assert not provider_error("openai", 500, OPENAI_STREAM_REFUSED).streaming_refused
    assert provider_error("openai", 500, other_param).refused_param is None
    broken_raw = {"error": {"code": 400, "message": "x", "metadata": {"raw": '{"param": "stream"'}}}
    assert not provider_error("openrouter", 400, broken_raw).streaming_refused
    assert not provider_error("openai", 400, OPENAI_401).streaming_refused
