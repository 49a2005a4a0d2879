"""OpenRouter login (OAuth PKCE) end to end: `llm-sidecar` spawned over pipes, a fake OpenRouter that
checks the S256 challenge against the verifier at `/auth/keys`, and a real Secret Service.

"The user approves the app" is simulated by registering a code with the challenge the sidecar put
in `auth_url`; "the browser comes back" is an HTTP GET of the redirect URL (loopback path) or the
host calling `openrouter_auth_complete` (deep-link path). `SIDECAR_OAUTH_TTL_S` shortens expiry.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.keys_support import audit_rows, clear, error_of, finish, keychain_sidecar, lookup
from tests.fakes.openai_compat import FakeOpenAICompat, pkce_challenge
from tests.harness import EXIT_BOUND_S, Sidecar

pytestmark = pytest.mark.keychain

COMPLETED = "openrouter_auth/completed"


@pytest.fixture(scope="module")
def openrouter() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openrouter") as fake:
        yield fake


@pytest.fixture
def kc(secret_service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    env = dict(secret_service_env)
    clear(env, "openrouter")
    yield env
    clear(env, "openrouter")


def _env(openrouter: FakeOpenAICompat, **extra: str) -> dict[str, str]:
    return {
        "OPENROUTER_BASE_URL": openrouter.api_base,
        "OPENROUTER_AUTH_URL": openrouter.url + "/auth",
        **extra,
    }


@pytest.fixture
def sidecar(kc: dict[str, str], openrouter: FakeOpenAICompat) -> Iterator[Sidecar]:
    with keychain_sidecar(kc, _env(openrouter)) as sc:
        yield sc
        assert sc.bad_lines == []


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def approve(openrouter: FakeOpenAICompat, start: dict[str, Any], code: str) -> str:
    """What OpenRouter does when the user approves: remember the challenge for `code`."""
    q = _query(start["auth_url"])
    assert q["code_challenge_method"] == "S256"
    return openrouter.register_oauth_code(code, q["code_challenge"])


def browser_get(
    url: str, *, method: str = "GET", host: str | None = None, extra: dict[str, str] | None = None
) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {**({"Host": host} if host else {}), **(extra or {})}
        conn.request(method, target, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        conn.close()


def _refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _wait_refused(port: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _refused(port):
            return True
        time.sleep(0.05)
    return False


# -------------------------------------------------------------------------------------------------
# The host's own callback (deep link), finished with openrouter_auth_complete


def test_host_callback_flow(sidecar: Sidecar, kc: dict[str, str], openrouter: FakeOpenAICompat) -> None:
    start = sidecar.result("openrouter_auth_start", {"callback_url": "myapp://openrouter"})
    state = start["state"]
    assert start["listening"] is False
    assert start["callback_url"] == f"myapp://openrouter?state={state}"
    auth = urlsplit(start["auth_url"])
    assert f"{auth.scheme}://{auth.netloc}{auth.path}" == openrouter.url + "/auth"
    q = _query(start["auth_url"])
    assert q["callback_url"] == start["callback_url"] and len(q["code_challenge"]) == 43
    assert start["expires_at"].endswith("Z")

    key = approve(openrouter, start, "code-host-1")
    done = sidecar.result("openrouter_auth_complete", {"code": "code-host-1", "state": state})
    assert done == {"provider": "openrouter", "configured": True, "masked": f"sk-…{key[-4:]}"}
    assert lookup(kc, "openrouter") == key

    exchange = [r for r in openrouter.requests if r.path == "/api/v1/auth/keys"][-1]
    body = exchange.json()
    assert body["code"] == "code-host-1" and body["code_challenge_method"] == "S256"
    verifier = body["code_verifier"]
    assert 43 <= len(verifier) <= 128 and pkce_challenge(verifier) == q["code_challenge"]
    # The verifier never left the process except to OpenRouter's exchange.
    assert not [m for m in sidecar.all_messages if verifier in str(m)]
    assert verifier not in sidecar.stderr_text

    again = error_of(sidecar.call("openrouter_auth_complete", {"code": "code-host-1", "state": state}))
    assert again["kind"] == "oauth_failed" and "already" in again["message"]

    listed = {k["provider"]: k for k in sidecar.result("list_keys")["keys"]}
    assert listed["openrouter"]["source"] == "keychain"
    finish(sidecar)
    assert ("oauth_completed", "openrouter", "ok", "key stored in keychain") in audit_rows(sidecar.home)
    assert ("oauth_failed", "openrouter", "error", "already_used") in audit_rows(sidecar.home)


def test_state_may_be_omitted_with_one_pending_login(sidecar: Sidecar, openrouter: FakeOpenAICompat) -> None:
    start = sidecar.result("openrouter_auth_start", {"callback_url": "myapp://cb?x=1"})
    assert start["callback_url"] == f"myapp://cb?x=1&state={start['state']}"
    approve(openrouter, start, "code-nostate")
    assert sidecar.result("openrouter_auth_complete", {"code": "code-nostate"})["configured"] is True


def test_state_mismatch_and_unknown_state(sidecar: Sidecar, openrouter: FakeOpenAICompat) -> None:
    start = sidecar.result("openrouter_auth_start", {"callback_url": "myapp://openrouter"})
    approve(openrouter, start, "code-mismatch")
    data = error_of(
        sidecar.call("openrouter_auth_complete", {"code": "code-mismatch", "state": "forged-state"})
    )
    assert data["kind"] == "oauth_failed" and data["details"]["reason"] == "unknown_state"
    # The real login is untouched by the forged one.
    ok = sidecar.result("openrouter_auth_complete", {"code": "code-mismatch", "state": start["state"]})
    assert ok["configured"] is True


def test_no_pending_login(sidecar: Sidecar) -> None:
    data = error_of(sidecar.call("openrouter_auth_complete", {"code": "whatever"}))
    assert data["kind"] == "oauth_failed" and "openrouter_auth_start" in data["message"]


def test_code_reuse(sidecar: Sidecar, kc: dict[str, str], openrouter: FakeOpenAICompat) -> None:
    first = sidecar.result("openrouter_auth_start", {"callback_url": "myapp://openrouter"})
    approve(openrouter, first, "code-once")
    sidecar.result("openrouter_auth_complete", {"code": "code-once", "state": first["state"]})
    exchanges = len([r for r in openrouter.requests if r.path == "/api/v1/auth/keys"])
    second = sidecar.result("openrouter_auth_start", {"callback_url": "myapp://openrouter"})
    data = error_of(sidecar.call("openrouter_auth_complete", {"code": "code-once", "state": second["state"]}))
    assert data["kind"] == "oauth_failed" and "only once" in data["message"]
    assert len([r for r in openrouter.requests if r.path == "/api/v1/auth/keys"]) == exchanges


def test_openrouter_refuses_the_code(
    sidecar: Sidecar, kc: dict[str, str], openrouter: FakeOpenAICompat
) -> None:
    start = sidecar.result("openrouter_auth_start", {"callback_url": "myapp://openrouter"})
    # OpenRouter never issued this code (or issued it for another challenge): 403.
    openrouter.register_oauth_code("code-other-challenge", pkce_challenge("x" * 43))
    data = error_of(
        sidecar.call("openrouter_auth_complete", {"code": "code-other-challenge", "state": start["state"]})
    )
    assert data["kind"] == "oauth_failed" and "HTTP 403" in data["message"]
    assert lookup(kc, "openrouter") is None


def test_host_callback_expiry(kc: dict[str, str], openrouter: FakeOpenAICompat) -> None:
    with keychain_sidecar(kc, _env(openrouter, SIDECAR_OAUTH_TTL_S="0.5")) as sc:
        start = sc.result("openrouter_auth_start", {"callback_url": "myapp://openrouter"})
        approve(openrouter, start, "code-late")
        time.sleep(0.7)
        data = error_of(sc.call("openrouter_auth_complete", {"code": "code-late", "state": start["state"]}))
        assert data["kind"] == "oauth_failed" and "expired" in data["message"]
        assert lookup(kc, "openrouter") is None


def test_bad_callback_url_and_unavailable_keychain(
    sidecar: Sidecar, no_secret_service_env: dict[str, str], openrouter: FakeOpenAICompat
) -> None:
    data = error_of(sidecar.call("openrouter_auth_start", {"callback_url": "not a url"}))
    assert data["kind"] == "invalid_request" and data["field"] == "callback_url"
    with keychain_sidecar(
        no_secret_service_env, _env(openrouter), backend="keyring.backends.fail.Keyring"
    ) as sc:
        data = error_of(sc.call("openrouter_auth_start", {}))
        assert data["kind"] == "keychain_unavailable"


# -------------------------------------------------------------------------------------------------
# The loopback listener


def test_loopback_flow(sidecar: Sidecar, kc: dict[str, str], openrouter: FakeOpenAICompat) -> None:
    start = sidecar.result("openrouter_auth_start", {})
    state = start["state"]
    assert start["listening"] is True
    cb = urlsplit(start["callback_url"])
    assert (cb.scheme, cb.hostname, cb.path) == ("http", "127.0.0.1", "/callback")
    assert _query(start["callback_url"]) == {"state": state}
    key = approve(openrouter, start, "code-loop-1")

    # Stray requests get small error pages and do not end the login.
    assert browser_get(f"http://127.0.0.1:{cb.port}/favicon.ico")[0] == 404
    assert browser_get(start["callback_url"] + "&code=code-loop-1", method="POST")[0] == 405
    assert browser_get(start["callback_url"] + "&code=code-loop-1", host="evil.example")[0] == 400
    assert browser_get(start["callback_url"] + "&code=code-loop-1", extra={"X-Pad": "p" * 9000})[0] == 431
    status, page = browser_get(f"http://127.0.0.1:{cb.port}/callback?state=forged&code=code-loop-1")
    assert status == 400 and "state mismatch" in page
    assert sidecar.notifications(COMPLETED) == []

    status, page = browser_get(start["callback_url"] + "&code=code-loop-1")
    assert status == 200 and "You can close this window" in page
    note = sidecar.wait_notification(COMPLETED)["params"]
    assert note == {"state": state, "ok": True, "masked": f"sk-…{key[-4:]}"}
    assert lookup(kc, "openrouter") == key
    assert _wait_refused(cb.port), "the listener should close once the login is finished"

    data = error_of(sidecar.call("openrouter_auth_complete", {"code": "code-loop-1", "state": state}))
    assert data["kind"] == "oauth_failed"
    finish(sidecar)
    rows = audit_rows(sidecar.home)
    assert ("oauth_failed", "openrouter", "error", "state_mismatch") in rows
    assert ("oauth_completed", "openrouter", "ok", "key stored in keychain") in rows


def test_loopback_exchange_failure_is_notified(
    sidecar: Sidecar, kc: dict[str, str], openrouter: FakeOpenAICompat
) -> None:
    start = sidecar.result("openrouter_auth_start", {})
    port = urlsplit(start["callback_url"]).port
    assert port is not None
    status, page = browser_get(start["callback_url"] + "&code=never-issued")
    assert status == 400 and "OpenRouter login failed" in page
    note = sidecar.wait_notification(COMPLETED)["params"]
    assert note["state"] == start["state"] and note["ok"] is False
    assert note["error"]["kind"] == "oauth_failed" and "masked" not in note
    assert _wait_refused(port)
    assert lookup(kc, "openrouter") is None


def test_loopback_redirect_without_code(sidecar: Sidecar) -> None:
    start = sidecar.result("openrouter_auth_start", {})
    status, page = browser_get(start["callback_url"] + "&error=access_denied")
    assert status == 400 and "access_denied" in page
    note = sidecar.wait_notification(COMPLETED)["params"]
    assert note["ok"] is False and note["error"]["details"]["reason"] == "no_code"


def test_host_may_finish_a_listening_login(sidecar: Sidecar, openrouter: FakeOpenAICompat) -> None:
    start = sidecar.result("openrouter_auth_start", {})
    port = urlsplit(start["callback_url"]).port
    assert port is not None
    approve(openrouter, start, "code-pasted")
    assert sidecar.result("openrouter_auth_complete", {"code": "code-pasted", "state": start["state"]})[
        "configured"
    ]
    assert _wait_refused(port)
    assert sidecar.notifications(COMPLETED) == []


def test_loopback_expiry(kc: dict[str, str], openrouter: FakeOpenAICompat) -> None:
    # An expired login is remembered as expired for one more TTL, then forgotten ("unknown
    # state"): 2 s leaves a slow machine room for the steps between the notification and the call.
    with keychain_sidecar(kc, _env(openrouter, SIDECAR_OAUTH_TTL_S="2")) as sc:
        start = sc.result("openrouter_auth_start", {})
        port = urlsplit(start["callback_url"]).port
        assert port is not None
        note = sc.wait_notification(COMPLETED, timeout=10)["params"]
        assert note["state"] == start["state"] and note["ok"] is False
        assert note["error"]["kind"] == "oauth_failed" and note["error"]["details"]["reason"] == "expired"
        assert _wait_refused(port)
        data = error_of(sc.call("openrouter_auth_complete", {"code": "late", "state": start["state"]}))
        assert data["kind"] == "oauth_failed" and "expired" in data["message"]
        assert sc.bad_lines == []


def test_listeners_close_at_shutdown(kc: dict[str, str], openrouter: FakeOpenAICompat) -> None:
    with keychain_sidecar(kc, _env(openrouter)) as sc:
        start = sc.result("openrouter_auth_start", {})
        port = urlsplit(start["callback_url"]).port
        assert port is not None and not _refused(port)
        started = time.monotonic()
        finish(sc)
        assert time.monotonic() - started < EXIT_BOUND_S
        assert _refused(port)


def test_one_listener_serves_every_pending_login(sidecar: Sidecar, openrouter: FakeOpenAICompat) -> None:
    first = sidecar.result("openrouter_auth_start", {})
    second = sidecar.result("openrouter_auth_start", {})
    port = urlsplit(first["callback_url"]).port
    assert port is not None and urlsplit(second["callback_url"]).port == port
    approve(openrouter, first, "code-first")
    key = approve(openrouter, second, "code-second")
    # The second login finishes first; the listener stays for the first one.
    assert browser_get(second["callback_url"] + "&code=code-second")[0] == 200
    assert sidecar.wait_notification(COMPLETED)["params"]["state"] == second["state"]
    assert not _refused(port)
    assert browser_get(first["callback_url"] + "&code=code-first")[0] == 200
    sidecar.wait_notification(COMPLETED, where=lambda n: n["params"]["state"] == first["state"])
    states = {n["params"]["state"] for n in sidecar.notifications(COMPLETED)}
    assert states == {first["state"], second["state"]}
    assert _wait_refused(port), "the listener closes once no login is pending"
    assert key


def test_a_thousand_logins_hold_one_socket(kc: dict[str, str], openrouter: FakeOpenAICompat) -> None:
    import psutil

    with keychain_sidecar(kc, _env(openrouter)) as sc:
        first = sc.result("openrouter_auth_start", {})
        proc = psutil.Process(sc.proc.pid)
        fds_before, rss_before = proc.num_fds(), proc.memory_info().rss
        ports = set()
        for _ in range(1000):
            ports.add(urlsplit(sc.result("openrouter_auth_start", {})["callback_url"]).port)
        fds_after, rss_after = proc.num_fds(), proc.memory_info().rss
        assert ports == {urlsplit(first["callback_url"]).port}
        assert fds_after - fds_before < 10, (fds_before, fds_after)
        # 1,000 pending logins (verifier, state, a waiting task each): generous ceiling.
        assert rss_after - rss_before < 40 * 1024 * 1024, (rss_before, rss_after)
        assert sc.bad_lines == []
