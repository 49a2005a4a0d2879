"""A canary key pushed through every key path of a spawned `llm-sidecar` (debug logs on) appears
nowhere but the keychain: not on stdout, not on stderr, not in any file of the state directory
(the SQLite audit table included), while the real Secret Service does hold it.

Paths: set_key (valid, rejected by three providers, unreachable endpoint, unvalidated), validate_key
(given, configured, rejected), a chat call with the key and a 401 that echoes part of it, invalid
params, list_keys, and an OpenRouter login (loopback and host callback) whose issued key and PKCE
verifier are canaries too.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.keys_support import audit_rows, clear, error_of, finish, keychain_sidecar, lookup
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.openai_compat import FakeOpenAICompat, error_reply
from tests.harness import Sidecar

pytestmark = pytest.mark.keychain

CANARY = "sk-canary-Qm7ZfT2xLp9VbN4cRw8KjH3dZq9T"
OAUTH_CANARY = "sk-or-v1-canaryOauthKey5Hx2Wq8Lm3Rt7Vn4Pb6Yc1T"
OAUTH_CANARY_2 = "sk-or-v1-canaryOauthKey9Jd3Kf6Gs2Bh8Nz5Mx4Qw7E"
ACCOUNTS = ("openai", "xai", "anthropic", "openrouter", "lmstudio", "down")


def _middle(secret: str) -> str:
    # OpenAI's 401 echoes the first 6 and last 4 characters; the rest must never show anywhere.
    return secret[6:-4]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def kc(secret_service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    env = dict(secret_service_env)
    clear(env, *ACCOUNTS)
    yield env
    clear(env, *ACCOUNTS)


def _approve(fake: FakeOpenAICompat, auth_url: str, code: str, key: str) -> None:
    challenge = parse_qs(urlsplit(auth_url).query)["code_challenge"][0]
    fake.register_oauth_code(code, challenge, key=key)


def _get(url: str) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _files(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in home.rglob("*") if p.is_file()}


def test_canary_appears_only_in_the_keychain(kc: dict[str, str]) -> None:
    with (
        FakeOpenAICompat("openai", valid_keys={CANARY}) as openai,
        FakeOpenAICompat("xai") as xai,
        FakeOpenAICompat("openrouter") as openrouter,
        FakeAnthropic() as anthropic,
    ):
        env = {
            "OPENAI_BASE_URL": openai.api_base,
            "XAI_BASE_URL": xai.api_base,
            "OPENROUTER_BASE_URL": openrouter.api_base,
            "OPENROUTER_AUTH_URL": openrouter.url + "/auth",
            "ANTHROPIC_BASE_URL": anthropic.url,
        }
        config = (
            f'[endpoints.lmstudio]\nbase_url = "{openai.api_base}"\n'
            f'[endpoints.down]\nbase_url = "http://127.0.0.1:{_closed_port()}/v1"\n'
            "[retry]\nmax_attempts = 1\n"
        )
        with keychain_sidecar(kc, env, config=config, args=["--log-level", "debug"]) as sc:
            verifiers = _exercise(sc, openai, openrouter)
            finish(sc)
            assert sc.bad_lines == []
            stdout = "\n".join(json.dumps(m) for m in sc.all_messages)
            stderr = sc.stderr_text
            files = _files(sc.home)
            rows = audit_rows(sc.home)

        assert '"level": "debug"' in stderr, "the run must have logged at debug level"
        assert "sidecar.db" in files and rows, "the audit table must exist and hold rows"
        assert {r[0] for r in rows} == {"key_set", "key_validated", "oauth_completed", "oauth_failed"}
        secrets = [CANARY, _middle(CANARY), OAUTH_CANARY, _middle(OAUTH_CANARY), OAUTH_CANARY_2, *verifiers]
        for secret in secrets:
            assert secret not in stdout, "a secret reached stdout"
            assert secret not in stderr, "a secret reached the log"
            for name, data in files.items():
                assert secret.encode() not in data, f"a secret reached {name}"

    # ...while the keychain holds the keys.
    assert lookup(kc, "openai") == CANARY
    assert lookup(kc, "lmstudio") == CANARY
    assert lookup(kc, "openrouter") == OAUTH_CANARY_2
    for account in ("xai", "anthropic", "down"):
        assert lookup(kc, account) is None


def _exercise(sc: Sidecar, openai: FakeOpenAICompat, openrouter: FakeOpenAICompat) -> list[str]:
    # set_key: accepted, stored.
    assert sc.result("set_key", {"provider": "openai", "api_key": CANARY})["masked"] == "sk-…Zq9T"
    # validate_key: given and configured, valid.
    assert sc.result("validate_key", {"provider": "openai", "api_key": CANARY})["valid"] is True
    assert sc.result("validate_key", {"provider": "openai"})["valid"] is True
    # Rejected by three providers (xAI 400 flat body, Anthropic 401, OpenRouter 401): error payloads.
    for provider in ("xai", "anthropic", "openrouter"):
        assert (
            error_of(sc.call("set_key", {"provider": provider, "api_key": CANARY}))["kind"] == "auth_failed"
        )
        checked = sc.result("validate_key", {"provider": provider, "api_key": CANARY})
        assert checked["valid"] is False and checked["error"]["kind"] == "auth_failed"
    # An endpoint that cannot be reached: nothing stored.
    assert error_of(sc.call("set_key", {"provider": "down", "api_key": CANARY}))["kind"] == "network_error"
    # Unvalidated, then validated as configured.
    sc.result("set_key", {"provider": "lmstudio", "api_key": CANARY, "validate": False})
    assert sc.result("validate_key", {"provider": "lmstudio"})["valid"] is True
    # Bad params around the key.
    assert (
        sc.call("set_key", {"provider": "openai", "api_key": CANARY, "validate": "yes"})["error"]["code"]
        == -32602
    )
    spaced = error_of(sc.call("set_key", {"provider": "openai", "api_key": CANARY[:12] + " " + CANARY[12:]}))
    assert spaced["kind"] == "invalid_request"
    # The key used for a chat call, then an upstream 401 that echoes part of it.
    chat = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert sc.result("complete", chat)["text"]
    assert openai.requests[-1].bearer == CANARY
    openai.enqueue(error_reply(401, "openai", "auth", key=CANARY), "/v1/chat/completions")
    assert error_of(sc.call("complete", chat))["kind"] == "auth_failed"
    # Listing.
    listed = {k["provider"]: k for k in sc.result("list_keys")["keys"]}
    assert listed["openai"]["masked"] == "sk-…Zq9T" and listed["lmstudio"]["source"] == "keychain"

    # OpenRouter login through the loopback listener, then through a host callback.
    start = sc.result("openrouter_auth_start", {})
    _approve(openrouter, start["auth_url"], "canary-code-1", OAUTH_CANARY)
    assert _get(start["callback_url"] + "&code=canary-code-1") == 200
    assert sc.wait_notification("openrouter_auth/completed")["params"]["ok"] is True
    start = sc.result("openrouter_auth_start", {"callback_url": "myapp://openrouter"})
    _approve(openrouter, start["auth_url"], "canary-code-2", OAUTH_CANARY_2)
    assert sc.result("openrouter_auth_complete", {"code": "canary-code-2", "state": start["state"]})[
        "configured"
    ]
    # A failed login, too.
    assert error_of(sc.call("openrouter_auth_complete", {"code": "canary-code-2"}))["kind"] == "oauth_failed"
    assert sc.result("validate_key", {"provider": "openrouter"})["valid"] is True

    verifiers = [r.json()["code_verifier"] for r in openrouter.requests if r.path == "/api/v1/auth/keys"]
    assert len(verifiers) == 2
    return verifiers
