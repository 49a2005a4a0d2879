"""Key validation for every provider through the real provider classes and HTTP client, against fake
upstreams on 127.0.0.1 answering each provider's own validation route with its real success and
failure bodies (OpenAI/xAI/OpenRouter: tests/fakes/openai_compat.py; Anthropic:
tests/fakes/anthropic.py; Gemini and Ollama: tests/fakes/keychecks.py).

The service runs in process with an in-memory key store and audit trail.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
import pytest

from sidecar.config import Config, Endpoint
from sidecar.errors import SidecarError
from sidecar.infra.audit import MemoryAudit
from sidecar.infra.keystore import KeyResolver, MemoryStore
from sidecar.providers.http import HttpClient
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.keys import KeyService
from sidecar.wire.keys import SetKeyParams, ValidateKeyParams
from tests.fakes.anthropic import VALID_KEY as ANTHROPIC_VALID
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.http import Reply, Stall
from tests.fakes.keychecks import GEMINI_VALID_KEY, FakeGeminiModels, FakeOllamaVersion
from tests.fakes.openai_compat import FakeOpenAICompat, error_reply

pytestmark = pytest.mark.anyio

WRONG = {
    "openai": "sk-proj-wrongKey0123456789abcdefWXYZ",
    "xai": "xai-wrongKey0123456789abcdefghijWXYZ",
    "openrouter": "sk-or-v1-wrongKey0123456789abcdefWXYZ",
    "anthropic": "sk-ant-api03-wrongKey0123456789WXYZ",
    "gemini": "AIzaSyWrongKey0123456789abcdefghiWXYZ",
    "local": "sk-local-wrongKey0123456789abcdWXYZ",
}
VALID = {
    "openai": "sk-test-valid",
    "xai": "xai-test-valid",
    "openrouter": "sk-or-v1-test-valid",
    "anthropic": ANTHROPIC_VALID,
    "gemini": GEMINI_VALID_KEY,
    "local": "sk-test-valid",
}


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "XAI_API_KEY",
        "OPENROUTER_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


class Ctx:
    request_id = 1

    async def notify(self, method: str, params: Any) -> None:  # pragma: no cover
        raise AssertionError("no notifications expected")


@dataclass
class Fakes:
    openai: FakeOpenAICompat
    xai: FakeOpenAICompat
    openrouter: FakeOpenAICompat
    anthropic: FakeAnthropic
    gemini: FakeGeminiModels
    ollama: FakeOllamaVersion


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    made = Fakes(
        FakeOpenAICompat("openai"),
        FakeOpenAICompat("xai"),
        FakeOpenAICompat("openrouter"),
        FakeAnthropic(),
        FakeGeminiModels(),
        FakeOllamaVersion(),
    )
    servers = [made.openai, made.xai, made.openrouter, made.anthropic, made.gemini, made.ollama]
    for server in servers:
        server.start()
    try:
        yield made
    finally:
        for server in servers:
            server.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class World:
    service: KeyService
    store: MemoryStore
    audit: MemoryAudit
    http: HttpClient


@pytest.fixture
async def world(fakes: Fakes) -> Any:
    for fake in (fakes.openai, fakes.xai, fakes.openrouter, fakes.anthropic, fakes.gemini, fakes.ollama):
        fake.clear()
    env = {
        "OPENAI_BASE_URL": fakes.openai.api_base,
        "XAI_BASE_URL": fakes.xai.api_base,
        "OPENROUTER_BASE_URL": fakes.openrouter.api_base,
        "ANTHROPIC_BASE_URL": fakes.anthropic.url,
        "GEMINI_BASE_URL": fakes.gemini.url,
        "OLLAMA_HOST": fakes.ollama.url,
    }
    config = Config(
        endpoints={
            "local": Endpoint(base_url=fakes.openai.api_base),
            "down": Endpoint(base_url=f"http://127.0.0.1:{_closed_port()}/v1"),
        }
    )
    store = MemoryStore()
    keys = KeyResolver(store)
    http = HttpClient("test")

    async def get_key(pid: str, env_var: str | None, account: str | None) -> str:
        return (await keys.resolve(pid, env_var, account=account)).value

    registry = ProviderRegistry(config, env, http, get_key)
    audit = MemoryAudit()
    service = KeyService(registry, keys, audit, env={}, validate_timeout_s=1.0)
    yield World(service, store, audit, http)
    await http.aclose()


async def _validate(w: World, provider: str, key: str | None) -> Any:
    return await w.service.validate_key(ValidateKeyParams(provider=provider, api_key=key), Ctx())


@pytest.mark.parametrize("provider", ["openai", "xai", "openrouter", "anthropic", "gemini", "local"])
async def test_valid_key(world: World, provider: str) -> None:
    result = await _validate(world, provider, VALID[provider])
    assert result.valid and result.error is None


@pytest.mark.parametrize("provider", ["openai", "xai", "openrouter", "anthropic", "gemini", "local"])
async def test_wrong_key_is_valid_false_auth_failed(world: World, provider: str) -> None:
    result = await _validate(world, provider, WRONG[provider])
    assert not result.valid
    assert result.error is not None and result.error.kind == "auth_failed"
    assert result.error.provider == provider
    assert WRONG[provider] not in msgspec.json.encode(result).decode()


async def test_routes_and_auth_headers(world: World, fakes: Fakes) -> None:
    for provider in ("openai", "xai", "openrouter", "anthropic", "gemini"):
        await _validate(world, provider, VALID[provider])
    (openai_req,) = fakes.openai.requests
    assert (openai_req.method, openai_req.path, openai_req.bearer) == ("GET", "/v1/models", "sk-test-valid")
    (xai_req,) = fakes.xai.requests
    assert (xai_req.path, xai_req.bearer) == ("/v1/api-key", "xai-test-valid")
    (or_req,) = fakes.openrouter.requests
    assert (or_req.path, or_req.bearer) == ("/api/v1/key", "sk-or-v1-test-valid")
    (ant_req,) = fakes.anthropic.requests
    assert ant_req.path == "/v1/models"
    assert ant_req.headers["x-api-key"] == ANTHROPIC_VALID and ant_req.headers["anthropic-version"]
    (gem_req,) = fakes.gemini.requests
    assert gem_req.path == "/v1beta/models" and gem_req.headers["x-goog-api-key"] == GEMINI_VALID_KEY
    assert "key" not in gem_req.query  # never in the URL


async def test_xai_bad_key_is_http_400_flat_body(world: World, fakes: Fakes) -> None:
    result = await _validate(world, "xai", WRONG["xai"])
    assert fakes.xai.requests[-1].path == "/v1/api-key"
    assert result.error is not None and "HTTP 400" in result.error.message
    assert "Incorrect API key provided" in result.error.message


async def test_gemini_bad_key_is_http_400_api_key_invalid(world: World) -> None:
    result = await _validate(world, "gemini", WRONG["gemini"])
    assert result.error is not None and result.error.kind == "auth_failed"
    assert "HTTP 400" in result.error.message and "API key not valid" in result.error.message


async def test_openai_bad_key_echo_is_not_a_whole_key(world: World) -> None:
    result = await _validate(world, "openai", WRONG["openai"])
    assert result.error is not None
    assert "HTTP 401" in result.error.message and WRONG["openai"] not in result.error.message


async def test_openrouter_details_have_credit_and_limits(world: World) -> None:
    result = await _validate(world, "openrouter", VALID["openrouter"])
    assert result.details is not None
    assert result.details["limit"] == 100 and result.details["limit_remaining"] == 74.5
    assert result.details["usage"] == 25.5 and result.details["limit_reset"] == "monthly"
    assert result.details["is_free_tier"] is False


async def test_xai_details_and_blocked_key(world: World, fakes: Fakes) -> None:
    result = await _validate(world, "xai", VALID["xai"])
    assert result.details is not None and result.details["acls"] == ["api-key:model:*", "api-key:endpoint:*"]
    fakes.xai.key_info_overrides["xai-test-valid"] = {"api_key_blocked": True}
    try:
        blocked = await _validate(world, "xai", VALID["xai"])
    finally:
        fakes.xai.key_info_overrides.clear()
    assert not blocked.valid and blocked.error is not None and blocked.error.kind == "auth_failed"


async def test_openai_key_without_quota_is_not_valid(world: World, fakes: Fakes) -> None:
    fakes.openai.enqueue(error_reply(429, "openai", "quota"), "/v1/models")
    result = await _validate(world, "openai", VALID["openai"])
    assert not result.valid and result.error is not None and result.error.kind == "quota_exceeded"


async def test_openrouter_server_error_is_an_rpc_error(world: World, fakes: Fakes) -> None:
    fakes.openrouter.enqueue(error_reply(500, "openrouter", "server"), "/api/v1/key")
    with pytest.raises(SidecarError) as err:
        await _validate(world, "openrouter", VALID["openrouter"])
    assert err.value.kind == "provider_error"


async def test_gemini_rate_limited_check_is_an_rpc_error_with_retry(world: World, fakes: Fakes) -> None:
    fakes.gemini.rate_limited = True
    try:
        with pytest.raises(SidecarError) as err:
            await _validate(world, "gemini", VALID["gemini"])
    finally:
        fakes.gemini.rate_limited = False
    assert err.value.kind == "rate_limited" and err.value.retry_after_s == pytest.approx(34.4)


async def test_ollama_reachable_and_unreachable(world: World, fakes: Fakes) -> None:
    result = await _validate(world, "ollama", None)
    assert result.valid and result.details == {"version": "0.12.6"}
    fakes.ollama.stop()
    try:
        down = await _validate(world, "ollama", None)
    finally:
        fakes.ollama.start()
    assert not down.valid and down.error is not None and down.error.kind == "ollama_unavailable"


async def test_configured_key_is_checked_when_none_is_given(world: World, fakes: Fakes) -> None:
    world.store.entries["anthropic"] = ANTHROPIC_VALID
    result = await _validate(world, "anthropic", None)
    assert result.valid and fakes.anthropic.requests[-1].headers["x-api-key"] == ANTHROPIC_VALID
    missing = await _validate(world, "gemini", None)
    assert not missing.valid and missing.error is not None and missing.error.kind == "missing_key"
    assert fakes.gemini.requests == []


async def test_set_key_stores_only_what_the_provider_accepts(world: World) -> None:
    result = await world.service.set_key(
        SetKeyParams(provider="openrouter", api_key=VALID["openrouter"]), Ctx()
    )
    assert result.details is not None and result.details["limit_remaining"] == 74.5
    with pytest.raises(SidecarError) as err:
        await world.service.set_key(SetKeyParams(provider="gemini", api_key=WRONG["gemini"]), Ctx())
    assert err.value.kind == "auth_failed" and "not stored" in err.value.message
    await world.service.set_key(SetKeyParams(provider="local", api_key=VALID["local"]), Ctx())
    assert world.store.entries == {"openrouter": VALID["openrouter"], "local": VALID["local"]}


async def test_unreachable_endpoint_stores_nothing(world: World) -> None:
    with pytest.raises(SidecarError) as err:
        await world.service.set_key(SetKeyParams(provider="down", api_key="sk-some-key-000000000000"), Ctx())
    assert err.value.kind == "network_error" and "not stored" in err.value.message
    assert world.store.entries == {}
    assert world.audit.rows[-1] == ("key_set", "down", "error", "network_error")


async def test_a_stalled_check_times_out(world: World, fakes: Fakes) -> None:
    fakes.openai.enqueue(
        Reply(status=200, headers={"content-type": "application/json"}, chunks=[Stall(5)]), "/v1/models"
    )
    with anyio.fail_after(4):
        with pytest.raises(SidecarError) as err:
            await world.service.set_key(SetKeyParams(provider="openai", api_key=VALID["openai"]), Ctx())
    assert err.value.kind == "timeout"
    assert world.store.entries == {}
