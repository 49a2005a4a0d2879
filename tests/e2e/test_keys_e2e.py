"""Key management end to end: `llm-sidecar` spawned over pipes against a real Secret Service
(gnome-keyring on a private D-Bus) and fake providers; keys checked in the keychain with
`secret-tool`, the audit table read from `<SIDECAR_HOME>/sidecar.db`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.keys_support import audit_rows, clear, error_of, finish, keychain_sidecar, lookup, store
from tests.fakes.anthropic import VALID_KEY as ANTHROPIC_VALID
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar
from tests.keychain import SecretService

pytestmark = pytest.mark.keychain

ACCOUNTS = ("openai", "anthropic", "gemini", "xai", "openrouter", "lmstudio")
OPENAI_OK = "sk-test-valid"
OPENROUTER_OK = "sk-or-v1-test-valid"
WRONG = "sk-proj-thisKeyIsWrong0123456789abcd"
LOCAL_CONFIG = '[endpoints.lmstudio]\nbase_url = "{base}"\n'


@pytest.fixture(scope="module")
def openai() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as fake:
        yield fake


@pytest.fixture(scope="module")
def openrouter() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openrouter") as fake:
        yield fake


@pytest.fixture(scope="module")
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def kc(secret_service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    env = dict(secret_service_env)
    clear(env, *ACCOUNTS)
    yield env
    clear(env, *ACCOUNTS)


@pytest.fixture
def sidecar(
    kc: dict[str, str], openai: FakeOpenAICompat, openrouter: FakeOpenAICompat, anthropic: FakeAnthropic
) -> Iterator[Sidecar]:
    env = {
        "OPENAI_BASE_URL": openai.api_base,
        "OPENROUTER_BASE_URL": openrouter.api_base,
        "ANTHROPIC_BASE_URL": anthropic.url,
    }
    with keychain_sidecar(kc, env, config=LOCAL_CONFIG.format(base=openai.api_base)) as sc:
        yield sc
        assert sc.bad_lines == []


def test_set_list_validate_delete_round_trip(sidecar: Sidecar, kc: dict[str, str]) -> None:
    result = sidecar.result("set_key", {"provider": "openai", "api_key": OPENAI_OK})
    assert result == {
        "provider": "openai",
        "configured": True,
        "source": "keychain",
        "masked": "…id",  # a 13-character key shows only its last 2 characters
        "validated": True,
    }
    assert lookup(kc, "openai") == OPENAI_OK

    keys = {k["provider"]: k for k in sidecar.result("list_keys")["keys"]}
    assert set(keys) == {"openai", "anthropic", "gemini", "xai", "openrouter", "lmstudio"}
    assert keys["openai"]["configured"] and keys["openai"]["source"] == "keychain"
    assert not keys["anthropic"]["configured"] and "error" not in keys["anthropic"]

    checked = sidecar.result("validate_key", {"provider": "openai"})
    assert checked == {"provider": "openai", "valid": True}

    assert sidecar.result("delete_key", {"provider": "openai"}) == {"provider": "openai", "deleted": True}
    assert lookup(kc, "openai") is None
    assert sidecar.result("delete_key", {"provider": "openai"}) == {"provider": "openai", "deleted": False}
    missing = sidecar.result("validate_key", {"provider": "openai"})
    assert missing["valid"] is False and missing["error"]["kind"] == "missing_key"

    finish(sidecar)
    assert audit_rows(sidecar.home) == [
        ("key_validated", "openai", "valid", "given"),
        ("key_set", "openai", "ok", "validated"),
        ("key_validated", "openai", "valid", "keychain"),
        ("key_deleted", "openai", "ok", None),
        ("key_deleted", "openai", "absent", None),
        ("key_validated", "openai", "invalid", "missing_key"),
    ]


def test_rejected_key_is_not_stored_and_keeps_the_old_one(sidecar: Sidecar, kc: dict[str, str]) -> None:
    store(kc, "anthropic", ANTHROPIC_VALID)
    answer = sidecar.call("set_key", {"provider": "anthropic", "api_key": WRONG})
    data = error_of(answer)
    assert data["kind"] == "auth_failed" and data["provider"] == "anthropic"
    assert "not stored" in data["message"] and WRONG not in answer["error"]["message"]
    assert lookup(kc, "anthropic") == ANTHROPIC_VALID

    checked = sidecar.result("validate_key", {"provider": "anthropic", "api_key": WRONG})
    assert checked["valid"] is False and checked["error"]["kind"] == "auth_failed"
    assert sidecar.result("validate_key", {"provider": "anthropic"})["valid"] is True


def test_openrouter_key_details_and_masking(
    sidecar: Sidecar, kc: dict[str, str], openrouter: FakeOpenAICompat
) -> None:
    long_key = "sk-or-v1-" + "a1b2c3d4e5" * 6 + "WXYZ"
    openrouter.valid_keys.add(long_key)
    result = sidecar.result("set_key", {"provider": "openrouter", "api_key": long_key})
    assert result["masked"] == "sk-…WXYZ"
    assert result["details"]["limit"] == 100 and result["details"]["limit_remaining"] == 74.5
    listed = {k["provider"]: k for k in sidecar.result("list_keys")["keys"]}
    assert listed["openrouter"]["masked"] == "sk-…WXYZ"
    assert lookup(kc, "openrouter") == long_key


def test_custom_endpoint_key_lives_under_its_name(sidecar: Sidecar, kc: dict[str, str]) -> None:
    sidecar.result("set_key", {"provider": "lmstudio", "api_key": OPENAI_OK})
    assert lookup(kc, "lmstudio") == OPENAI_OK and lookup(kc, "openai") is None
    assert sidecar.result("validate_key", {"provider": "lmstudio"})["valid"] is True


def test_unvalidated_set_makes_no_upstream_call(
    sidecar: Sidecar, kc: dict[str, str], openai: FakeOpenAICompat
) -> None:
    # lmstudio's base URL is the OpenAI fake, which would see a check and reject this key.
    before = len(openai.requests)
    result = sidecar.result(
        "set_key", {"provider": "lmstudio", "api_key": "sk-unchecked-0123456789abcdef", "validate": False}
    )
    assert result["validated"] is False
    assert lookup(kc, "lmstudio") == "sk-unchecked-0123456789abcdef"
    assert len(openai.requests) == before


def test_ollama_has_no_key_and_unknown_providers_are_named(sidecar: Sidecar) -> None:
    data = error_of(sidecar.call("set_key", {"provider": "ollama", "api_key": "x" * 20}))
    assert data["kind"] == "invalid_request" and "needs no API key" in data["message"]
    assert error_of(sidecar.call("delete_key", {"provider": "ollama"}))["kind"] == "invalid_request"
    assert error_of(sidecar.call("set_key", {"provider": "mistral", "api_key": "x" * 20}))["kind"] == (
        "unsupported_provider"
    )
    assert sidecar.call("set_key", {"provider": "openai"})["error"]["code"] == -32602


def test_environment_key_wins_and_is_reported(kc: dict[str, str], openai: FakeOpenAICompat) -> None:
    env = {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": "sk-from-env-0123456789abcdefWXYZ"}
    with keychain_sidecar(kc, env) as sc:
        openai.valid_keys.add("sk-from-env-0123456789abcdefWXYZ")
        listed = {k["provider"]: k for k in sc.result("list_keys")["keys"]}
        assert listed["openai"] == {
            "provider": "openai",
            "configured": True,
            "source": "env",
            "masked": "sk-…WXYZ",
            "env_var": "OPENAI_API_KEY",
        }
        result = sc.result("set_key", {"provider": "openai", "api_key": OPENAI_OK})
        assert result["overridden_by_env"] == "OPENAI_API_KEY"
        assert sc.result("validate_key", {"provider": "openai"})["valid"] is True
        assert openai.requests[-1].bearer == "sk-from-env-0123456789abcdefWXYZ"


def test_locked_keychain_is_keychain_unavailable(
    locked_secret_service: SecretService, openai: FakeOpenAICompat
) -> None:
    with keychain_sidecar(locked_secret_service.env, {"OPENAI_BASE_URL": openai.api_base}) as sc:
        data = error_of(sc.call("set_key", {"provider": "openai", "api_key": OPENAI_OK}))
        assert data["kind"] == "keychain_unavailable" and data["provider"] == "openai"
        assert "unlock" in data["message"].lower()
        listed = {k["provider"]: k for k in sc.result("list_keys")["keys"]}
        assert listed["gemini"]["configured"] is False
        assert listed["gemini"]["error"]["kind"] == "keychain_unavailable"
        assert "GEMINI_API_KEY" in listed["gemini"]["error"]["message"]
        assert error_of(sc.call("validate_key", {"provider": "openai"}))["kind"] == "keychain_unavailable"
        # The keychain never read the protocol from stdin: the sidecar still answers.
        assert sc.result("info")["version"]
        assert sc.bad_lines == []


def test_no_keychain_at_all(no_secret_service_env: dict[str, str]) -> None:
    # keyring's fail backend is what its detection picks on a bus where nothing offers secrets.
    with keychain_sidecar(no_secret_service_env, backend="keyring.backends.fail.Keyring") as sc:
        data = error_of(sc.call("delete_key", {"provider": "xai"}))
        assert data["kind"] == "keychain_unavailable"
        assert "Secret Service" in data["message"]
        assert sc.result("info")["version"]
        finish(sc)
        assert audit_rows(sc.home) == [("key_deleted", "xai", "error", "keychain_unavailable")]


def test_null_backend_stores_nothing_and_says_so(openai: FakeOpenAICompat) -> None:
    with Sidecar({"OPENAI_BASE_URL": openai.api_base}) as sc:  # the harness's null backend
        data = error_of(sc.call("set_key", {"provider": "openai", "api_key": OPENAI_OK}))
        assert data["kind"] == "keychain_unavailable" and "stores nothing" in data["message"]
