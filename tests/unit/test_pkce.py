"""Unit tests of sidecar.core.pkce: RFC 7636 verifier and S256 challenge, state, and the pending-login
table (expiry, single use, code reuse) with an injected clock and random source."""

from __future__ import annotations

import hashlib
import os
import string

import pytest

from sidecar.core import pkce
from sidecar.core.pkce import LoginError, PendingLogins


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counting_random() -> pkce.RandomBytes:
    """Deterministic but different bytes on every call."""
    counter = [0]

    def take(n: int) -> bytes:
        counter[0] += 1
        seed = counter[0].to_bytes(4, "big")
        out = b""
        while len(out) < n:
            out += hashlib.sha256(seed + len(out).to_bytes(4, "big")).digest()
        return out[:n]

    return take


def test_rfc7636_appendix_b_example() -> None:
    # RFC 7636 Appendix B: the verifier from these 32 octets and its S256 challenge.
    octets = bytes(
        [116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186,
         22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121]
    )  # fmt: skip
    verifier = pkce._b64url(octets)
    assert verifier == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce.challenge_s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_verifier_is_43_to_128_unreserved_characters() -> None:
    for _ in range(50):
        verifier = pkce.make_verifier(os.urandom)
        assert 43 <= len(verifier) <= 128
        assert set(verifier) <= set(string.ascii_letters + string.digits + "-._~")
        assert pkce.is_valid_verifier(verifier)
    assert len({pkce.make_verifier(os.urandom) for _ in range(20)}) == 20


def test_challenge_has_no_padding_and_is_base64url() -> None:
    challenge = pkce.challenge_s256(pkce.make_verifier(os.urandom))
    assert len(challenge) == 43 and "=" not in challenge
    assert set(challenge) <= set(string.ascii_letters + string.digits + "-_")


@pytest.mark.parametrize(
    "verifier, ok",
    [("a" * 42, False), ("a" * 43, True), ("a" * 128, True), ("a" * 129, False), ("a" * 42 + "!", False),
     ("A-._~" * 9, True), ("a b" * 20, False)],
)  # fmt: skip
def test_is_valid_verifier(verifier: str, ok: bool) -> None:
    assert pkce.is_valid_verifier(verifier) is ok


def test_short_random_source_is_refused() -> None:
    with pytest.raises(ValueError):
        pkce.make_verifier(lambda n: b"x" * 10)
    with pytest.raises(ValueError):
        pkce.make_state(lambda n: b"x" * 4)


def test_start_builds_callback_from_state_and_keeps_verifier_private() -> None:
    clock = Clock()
    logins = PendingLogins(clock, counting_random(), ttl_s=600)
    login = logins.start(lambda state: f"myapp://cb?state={state}")
    assert login.callback_url == f"myapp://cb?state={login.state}"
    assert login.expires_at == clock.now + 600
    assert login.challenge == pkce.challenge_s256(login.verifier)
    assert login.verifier not in repr(login)
    assert len(login.state) >= 22


def test_take_is_single_use() -> None:
    logins = PendingLogins(Clock(), counting_random())
    login = logins.start(lambda s: s)
    taken = logins.take(login.state, "code-1")
    assert taken.verifier == login.verifier
    with pytest.raises(LoginError) as err:
        logins.take(login.state, "code-1")
    assert err.value.reason == "already_used"


def test_unknown_state() -> None:
    logins = PendingLogins(Clock(), counting_random())
    logins.start(lambda s: s)
    with pytest.raises(LoginError) as err:
        logins.take("not-a-state", "code")
    assert err.value.reason == "unknown_state"


def test_expiry_at_ttl() -> None:
    clock = Clock()
    logins = PendingLogins(clock, counting_random(), ttl_s=600)
    login = logins.start(lambda s: s)
    clock.now += 599.9
    assert logins.peek(login.state) is not None
    clock.now += 0.1
    assert logins.peek(login.state) is None
    with pytest.raises(LoginError) as err:
        logins.take(login.state, "code")
    assert err.value.reason == "expired"
    assert logins.pending_states() == []


def test_expired_login_is_forgotten_after_another_ttl() -> None:
    clock = Clock()
    logins = PendingLogins(clock, counting_random(), ttl_s=10)
    login = logins.start(lambda s: s)
    clock.now += 10
    assert logins.expire(login.state) is not None
    clock.now += 10
    with pytest.raises(LoginError) as err:
        logins.take(login.state, "code")
    assert err.value.reason == "unknown_state"


def test_reused_code_fails_on_a_new_login_and_ends_it() -> None:
    logins = PendingLogins(Clock(), counting_random())
    first = logins.start(lambda s: s)
    logins.take(first.state, "the-code")
    second = logins.start(lambda s: s)
    with pytest.raises(LoginError) as err:
        logins.take(second.state, "the-code")
    assert err.value.reason == "code_reused"
    with pytest.raises(LoginError) as err:
        logins.take(second.state, "another-code")
    assert err.value.reason == "failed"


def test_resolve_state_without_state() -> None:
    logins = PendingLogins(Clock(), counting_random())
    with pytest.raises(LoginError) as err:
        logins.resolve_state(None)
    assert err.value.reason == "missing_state"
    only = logins.start(lambda s: s)
    assert logins.resolve_state(None) == only.state
    assert logins.resolve_state("explicit") == "explicit"
    logins.start(lambda s: s)
    with pytest.raises(LoginError) as err:
        logins.resolve_state("")
    assert err.value.reason == "ambiguous"


def test_fail_and_expire_end_a_pending_login_once() -> None:
    logins = PendingLogins(Clock(), counting_random())
    a = logins.start(lambda s: s)
    b = logins.start(lambda s: s)
    assert logins.fail(a.state) is not None
    assert logins.fail(a.state) is None
    assert logins.expire(b.state) is not None
    assert logins.expire(b.state) is None
    with pytest.raises(LoginError) as err:
        logins.take(a.state, "c")
    assert err.value.reason == "failed"


def test_states_and_verifiers_differ_between_logins() -> None:
    logins = PendingLogins(Clock(), counting_random())
    made = [logins.start(lambda s: s) for _ in range(10)]
    assert len({m.state for m in made}) == 10
    assert len({m.verifier for m in made}) == 10


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PendingLogins(Clock(), os.urandom, ttl_s=0)
