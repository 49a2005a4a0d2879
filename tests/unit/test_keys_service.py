"""Unit tests of sidecar.services.keys with an in-memory key store, an in-memory audit trail and
scripted providers (no network, no keychain)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import msgspec
import pytest

from sidecar import redact
from sidecar.config import Config, Endpoint
from sidecar.core.assemble import ProviderEvent
from sidecar.errors import SidecarError
from sidecar.infra.audit import MemoryAudit
from sidecar.infra.keystore import KeyResolver, MemoryStore
from sidecar.providers.base import KeyCheck, Provider
from sidecar.providers.http import HttpClient, Timeouts
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.keys import KeyService
from sidecar.wire.base import Empty
from sidecar.wire.chat import CompleteParams
from sidecar.wire.keys import ProviderParams, SetKeyParams, ValidateKeyParams

pytestmark = pytest.mark.anyio

GOOD = "sk-good-key-0123456789abcdefghij"
BAD = "sk-bad-key-ZYXWVUTSRQPONMLKJIHG"
KEY_ENVS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "XAI_API_KEY",
    "OPENROUTER_API_KEY",
    "LOCAL_KEY",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_ENVS:
        monkeypatch.delenv(name, raising=False)


class Ctx:
    request_id = 1

    async def notify(self, method: str, params: Any) -> None:  # pragma: no cover - never used here
        raise AssertionError("key methods send no notifications")


class ScriptedProvider(Provider):
    """validate_key answers from `outcome`: a KeyCheck, an exception, or "sleep"."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.seen: list[str] = []
        self.outcome: KeyCheck | SidecarError | str | None = None

    def stream(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        raise NotImplementedError

    def complete(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        raise NotImplementedError

    async def validate_key(self, api_key: str, timeouts: Timeouts) -> KeyCheck:
        self.seen.append(api_key)
        if self.outcome == "sleep":
            await anyio.sleep(30)
        if isinstance(self.outcome, SidecarError):
            raise self.outcome
        if isinstance(self.outcome, KeyCheck):
            return self.outcome
        if api_key == GOOD or not self.spec.needs_key:
            details = {"limit": 100, "limit_remaining": 74.5} if self.id == "openrouter" else None
            return KeyCheck(valid=True, details=details)
        return KeyCheck(
            valid=False, error=SidecarError("auth_failed", "The provider rejected the key.", provider=self.id)
        )


class World:
    def __init__(self, store: MemoryStore | None = None, env: dict[str, str] | None = None) -> None:
        config = Config(
            endpoints={
                "local": Endpoint(base_url="http://127.0.0.1:1/v1"),
                "envonly": Endpoint(
                    base_url="http://127.0.0.1:1/v1", keychain=False, api_key_env="LOCAL_KEY"
                ),
                "open": Endpoint(base_url="http://127.0.0.1:1/v1", needs_key=False),
            }
        )
        self.env = env or {}

        async def get_key(pid: str, env_var: str | None, account: str | None) -> str:
            raise AssertionError("providers here never fetch keys")

        self.registry = ProviderRegistry(config, {}, HttpClient("test"), get_key)
        self.providers: dict[str, ScriptedProvider] = {}
        for spec in self.registry.specs.values():
            provider = ScriptedProvider(spec, self.registry.http, get_key)
            self.providers[spec.id] = provider
            self.registry._providers[spec.id] = provider
        self.store = store or MemoryStore()
        self.audit = MemoryAudit()
        self.service = KeyService(
            self.registry, KeyResolver(self.store), self.audit, env=self.env, validate_timeout_s=0.2
        )


def _dump(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


# -------------------------------------------------------------------------------------------------
# set_key


async def test_set_key_validates_then_stores_and_masks() -> None:
    w = World()
    result = await w.service.set_key(SetKeyParams(provider="openai", api_key=f"  {GOOD} "), Ctx())
    assert w.store.entries == {"openai": GOOD}
    assert w.providers["openai"].seen == [GOOD]
    assert result.configured and result.source == "keychain" and result.validated
    assert result.masked == redact.mask(GOOD) and GOOD not in _dump(result)
    assert result.overridden_by_env is None
    assert [r[:3] for r in w.audit.rows] == [
        ("key_validated", "openai", "valid"),
        ("key_set", "openai", "ok"),
    ]


async def test_set_key_returns_openrouter_credit_details() -> None:
    w = World()
    result = await w.service.set_key(SetKeyParams(provider="openrouter", api_key=GOOD), Ctx())
    assert result.details == {"limit": 100, "limit_remaining": 74.5}


async def test_set_key_rejected_key_is_not_stored() -> None:
    w = World(MemoryStore({"openai": GOOD}))
    with pytest.raises(SidecarError) as err:
        await w.service.set_key(SetKeyParams(provider="openai", api_key=BAD), Ctx())
    assert err.value.kind == "auth_failed"
    assert "not stored" in err.value.message
    assert w.store.entries == {"openai": GOOD}
    assert ("key_set", "openai", "rejected", "auth_failed") in w.audit.rows


@pytest.mark.parametrize("kind", ["network_error", "timeout", "provider_error"])
async def test_set_key_check_failure_stores_nothing(kind: str) -> None:
    w = World()
    w.providers["xai"].outcome = SidecarError(kind, "Could not reach xAI.", provider="xai")  # type: ignore[arg-type]
    with pytest.raises(SidecarError) as err:
        await w.service.set_key(SetKeyParams(provider="xai", api_key=GOOD), Ctx())
    assert err.value.kind == kind
    assert "not stored" in err.value.message
    assert w.store.entries == {}
    assert ("key_set", "xai", "error", kind) in w.audit.rows


async def test_set_key_validation_has_a_time_limit() -> None:
    w = World()
    w.providers["gemini"].outcome = "sleep"
    with anyio.fail_after(5):
        with pytest.raises(SidecarError) as err:
            await w.service.set_key(SetKeyParams(provider="gemini", api_key=GOOD), Ctx())
    assert err.value.kind == "timeout"
    assert w.store.entries == {}


async def test_set_key_without_validation_makes_no_call() -> None:
    w = World()
    result = await w.service.set_key(SetKeyParams(provider="anthropic", api_key=BAD, validate=False), Ctx())
    assert w.providers["anthropic"].seen == []
    assert w.store.entries == {"anthropic": BAD}
    assert not result.validated
    assert [r[0] for r in w.audit.rows] == ["key_set"]


async def test_set_key_custom_endpoint_uses_its_name_as_account() -> None:
    w = World()
    await w.service.set_key(SetKeyParams(provider="local", api_key=GOOD), Ctx())
    assert w.store.entries == {"local": GOOD}


@pytest.mark.parametrize("provider", ["ollama", "open"])
async def test_set_key_for_a_keyless_provider_is_invalid(provider: str) -> None:
    w = World()
    with pytest.raises(SidecarError) as err:
        await w.service.set_key(SetKeyParams(provider=provider, api_key=GOOD), Ctx())
    assert err.value.kind == "invalid_request"
    assert "needs no API key" in err.value.message
    assert w.store.entries == {}


async def test_set_key_for_an_env_only_endpoint_is_invalid() -> None:
    w = World()
    with pytest.raises(SidecarError) as err:
        await w.service.set_key(SetKeyParams(provider="envonly", api_key=GOOD), Ctx())
    assert err.value.kind == "invalid_request" and "LOCAL_KEY" in err.value.message


async def test_set_key_unknown_provider() -> None:
    w = World()
    with pytest.raises(SidecarError) as err:
        await w.service.set_key(SetKeyParams(provider="nope", api_key=GOOD), Ctx())
    assert err.value.kind == "unsupported_provider"


@pytest.mark.parametrize("key", ["", "   ", "sk-with space-0123456789"])
async def test_set_key_refuses_empty_or_spaced_keys(key: str) -> None:
    w = World()
    with pytest.raises(SidecarError) as err:
        await w.service.set_key(SetKeyParams(provider="openai", api_key=key), Ctx())
    assert err.value.kind == "invalid_request" and err.value.field == "api_key"
    assert w.providers["openai"].seen == []


async def test_set_key_keychain_failure_is_reported() -> None:
    fault = SidecarError("keychain_unavailable", "The OS keychain is locked. Unlock it, then retry.")
    w = World(MemoryStore(fail=fault))
    with pytest.raises(SidecarError) as err:
        await w.service.set_key(SetKeyParams(provider="openai", api_key=GOOD), Ctx())
    assert err.value.kind == "keychain_unavailable"
    assert ("key_set", "openai", "error", "keychain_unavailable") in w.audit.rows


async def test_set_key_says_when_the_environment_wins() -> None:
    w = World(env={"OPENAI_API_KEY": "sk-env-key-000000000000000"})
    result = await w.service.set_key(SetKeyParams(provider="openai", api_key=GOOD), Ctx())
    assert result.overridden_by_env == "OPENAI_API_KEY"


# -------------------------------------------------------------------------------------------------
# delete_key


async def test_delete_key_present_and_absent() -> None:
    w = World(MemoryStore({"openai": GOOD}))
    assert (await w.service.delete_key(ProviderParams(provider="openai"), Ctx())).deleted is True
    assert (await w.service.delete_key(ProviderParams(provider="openai"), Ctx())).deleted is False
    assert [r[:3] for r in w.audit.rows] == [
        ("key_deleted", "openai", "ok"),
        ("key_deleted", "openai", "absent"),
    ]


async def test_delete_key_for_ollama_is_invalid() -> None:
    w = World()
    with pytest.raises(SidecarError) as err:
        await w.service.delete_key(ProviderParams(provider="ollama"), Ctx())
    assert err.value.kind == "invalid_request"


async def test_delete_key_keychain_failure() -> None:
    w = World(MemoryStore(fail=SidecarError("keychain_unavailable", "No keychain.")))
    with pytest.raises(SidecarError) as err:
        await w.service.delete_key(ProviderParams(provider="xai"), Ctx())
    assert err.value.kind == "keychain_unavailable"


# -------------------------------------------------------------------------------------------------
# list_keys


async def test_list_keys_covers_every_keyed_provider_with_source_and_mask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env_key = "xai-from-the-environment-0123456789"
    monkeypatch.setenv("XAI_API_KEY", env_key)
    monkeypatch.setenv("LOCAL_KEY", "sk-local-env-key-0000000000000")
    w = World(
        MemoryStore({"openai": GOOD, "local": BAD}), env={"LOCAL_KEY": "sk-local-env-key-0000000000000"}
    )
    result = await w.service.list_keys(Empty(), Ctx())
    by = {k.provider: k for k in result.keys}
    assert set(by) == {"openai", "anthropic", "gemini", "xai", "openrouter", "local", "envonly"}
    assert (by["openai"].configured, by["openai"].source, by["openai"].masked) == (
        True,
        "keychain",
        "sk-…ghij",
    )
    assert (by["xai"].configured, by["xai"].source) == (True, "env")
    assert by["xai"].masked == "xai…6789" and by["xai"].env_var == "XAI_API_KEY"
    assert (by["anthropic"].configured, by["anthropic"].source, by["anthropic"].masked) == (False, None, None)
    assert (by["local"].source, by["envonly"].source) == ("keychain", "env")
    text = _dump(result)
    for secret in (GOOD, BAD, env_key):
        assert secret not in text
    for info in result.keys:
        if info.masked:
            assert len(info.masked.replace("…", "")) <= 7


async def test_list_keys_keychain_failure_marks_entries_not_the_env_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSyEnvironmentKey0123456789abcd")
    fault = SidecarError(
        "keychain_unavailable",
        "The OS keychain is locked. Unlock it, then retry.",
        details={"cause": "locked", "backend": "keyring.backends.SecretService.Keyring"},
    )
    w = World(MemoryStore(fail=fault))
    result = await w.service.list_keys(Empty(), Ctx())
    by = {k.provider: k for k in result.keys}
    assert by["gemini"].configured and by["gemini"].source == "env" and by["gemini"].error is None
    assert not by["openai"].configured
    assert by["openai"].error is not None and by["openai"].error.kind == "keychain_unavailable"
    assert "GEMINI_API_KEY" not in by["openai"].error.message  # the hint names the provider's own variable
    assert "OPENAI_API_KEY" in by["openai"].error.message


# -------------------------------------------------------------------------------------------------
# validate_key


async def test_validate_given_key_valid_and_invalid() -> None:
    w = World()
    ok = await w.service.validate_key(ValidateKeyParams(provider="openai", api_key=GOOD), Ctx())
    assert ok.valid and ok.error is None
    bad = await w.service.validate_key(ValidateKeyParams(provider="openai", api_key=BAD), Ctx())
    assert not bad.valid and bad.error is not None and bad.error.kind == "auth_failed"
    assert w.store.entries == {}
    assert [r[2] for r in w.audit.rows] == ["valid", "invalid"]


async def test_validate_configured_key_from_keychain_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(MemoryStore({"openrouter": GOOD}))
    result = await w.service.validate_key(ValidateKeyParams(provider="openrouter"), Ctx())
    assert result.valid and result.details == {"limit": 100, "limit_remaining": 74.5}
    assert w.providers["openrouter"].seen == [GOOD]
    monkeypatch.setenv("OPENROUTER_API_KEY", BAD)
    result = await w.service.validate_key(ValidateKeyParams(provider="openrouter"), Ctx())
    assert not result.valid and w.providers["openrouter"].seen[-1] == BAD


async def test_validate_without_any_key_is_missing_key() -> None:
    w = World()
    result = await w.service.validate_key(ValidateKeyParams(provider="anthropic"), Ctx())
    assert not result.valid
    assert result.error is not None and result.error.kind == "missing_key"
    assert "set_key" in result.error.message
    assert w.providers["anthropic"].seen == []
    assert w.audit.rows[-1] == ("key_validated", "anthropic", "invalid", "missing_key")


async def test_validate_env_only_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(env={"LOCAL_KEY": GOOD})
    result = await w.service.validate_key(ValidateKeyParams(provider="envonly"), Ctx())
    assert result.valid and w.providers["envonly"].seen == [GOOD]
    w2 = World()
    result = await w2.service.validate_key(ValidateKeyParams(provider="envonly"), Ctx())
    assert result.error is not None and result.error.kind == "missing_key"


async def test_validate_network_failure_is_an_error_not_invalid() -> None:
    w = World()
    w.providers["openai"].outcome = SidecarError(
        "network_error", "Could not connect to OpenAI.", provider="openai"
    )
    with pytest.raises(SidecarError) as err:
        await w.service.validate_key(ValidateKeyParams(provider="openai", api_key=GOOD), Ctx())
    assert err.value.kind == "network_error"
    assert w.audit.rows[-1] == ("key_validated", "openai", "error", "network_error")


async def test_validate_keychain_failure_is_an_error() -> None:
    w = World(MemoryStore(fail=SidecarError("keychain_unavailable", "No keychain.")))
    with pytest.raises(SidecarError) as err:
        await w.service.validate_key(ValidateKeyParams(provider="openai"), Ctx())
    assert err.value.kind == "keychain_unavailable"


async def test_validate_ollama_checks_reachability_without_a_key() -> None:
    w = World()
    result = await w.service.validate_key(ValidateKeyParams(provider="ollama", api_key="ignored-key"), Ctx())
    assert result.valid and w.providers["ollama"].seen == [""]
    w.providers["ollama"].outcome = KeyCheck(
        valid=False, error=SidecarError("ollama_unavailable", "Ollama is not running.", provider="ollama")
    )
    result = await w.service.validate_key(ValidateKeyParams(provider="ollama"), Ctx())
    assert not result.valid and result.error is not None and result.error.kind == "ollama_unavailable"


async def test_no_key_in_results_or_audit() -> None:
    w = World(MemoryStore({"openai": GOOD}))
    outputs: list[Any] = [
        await w.service.set_key(SetKeyParams(provider="xai", api_key=GOOD), Ctx()),
        await w.service.validate_key(ValidateKeyParams(provider="xai", api_key=BAD), Ctx()),
        await w.service.validate_key(ValidateKeyParams(provider="openai"), Ctx()),
        await w.service.list_keys(Empty(), Ctx()),
        await w.service.delete_key(ProviderParams(provider="xai"), Ctx()),
    ]
    text = _dump(outputs) + json.dumps(w.audit.rows)
    assert GOOD not in text and BAD not in text
