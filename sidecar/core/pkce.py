"""OAuth PKCE (RFC 7636) for the OpenRouter login: verifier, S256 challenge, state, and the table of
pending logins (expiry, single use).

A login is started with `PendingLogins.start`, which makes a fresh verifier and state, and ended
with `PendingLogins.take`, which hands the verifier out exactly once. A login that is taken,
expired or failed is remembered for a while, so a second attempt gets a precise reason
("already used", "expired") rather than "unknown"; a code that was exchanged once is remembered
(as a hash) so that reusing it fails here, before any request goes out.

The verifier never leaves the process: it is not part of any repr, and only `take` returns it.

Pure: the clock and the source of randomness are injected; no I/O, no logging.

Must not know: HTTP, the keychain, the protocol, OpenRouter's URLs.
"""

from __future__ import annotations

import base64
import hashlib
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

VERIFIER_MIN: Final = 43
VERIFIER_MAX: Final = 128
UNRESERVED: Final = frozenset(string.ascii_letters + string.digits + "-._~")
DEFAULT_TTL_S: Final = 600.0
_VERIFIER_BYTES: Final = 48  # base64url -> 64 characters, 384 bits
_STATE_BYTES: Final = 24  # base64url -> 32 characters

Clock = Callable[[], float]
RandomBytes = Callable[[int], bytes]
Failure = Literal[
    "unknown_state", "expired", "already_used", "failed", "code_reused", "missing_state", "ambiguous"
]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def is_valid_verifier(verifier: str) -> bool:
    """43 to 128 characters from the unreserved set `[A-Za-z0-9-._~]` (RFC 7636 §4.1)."""
    return VERIFIER_MIN <= len(verifier) <= VERIFIER_MAX and all(c in UNRESERVED for c in verifier)


def make_verifier(random_bytes: RandomBytes) -> str:
    """A fresh code verifier: base64url of 48 random bytes (64 characters, all unreserved)."""
    verifier = _b64url(random_bytes(_VERIFIER_BYTES))
    if not is_valid_verifier(verifier):  # only a broken random source can get here
        raise ValueError("the random source returned too few bytes for a PKCE verifier")
    return verifier


def challenge_s256(verifier: str) -> str:
    """`BASE64URL(SHA256(ASCII(verifier)))` without padding (RFC 7636 §4.2)."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def make_state(random_bytes: RandomBytes) -> str:
    state = _b64url(random_bytes(_STATE_BYTES))
    if len(state) < 22:
        raise ValueError("the random source returned too few bytes for an OAuth state")
    return state


class LoginError(Exception):
    """A login can't be finished; `reason` says why (the service turns it into `oauth_failed`)."""

    def __init__(self, reason: Failure, message: str) -> None:
        super().__init__(message)
        self.reason: Failure = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class PendingLogin:
    state: str
    challenge: str
    callback_url: str
    created_at: float
    expires_at: float
    listening: bool = False
    verifier: str = field(repr=False, default="")


@dataclass(slots=True)
class _Spent:
    reason: Failure
    until: float


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


_WHY: Final[dict[Failure, str]] = {
    "expired": (
        "This OpenRouter login expired before it was finished. Start a new login with openrouter_auth_start."
    ),
    "already_used": (
        "This OpenRouter login was already finished (a login can be completed once). Start a new login "
        "with openrouter_auth_start if you need another key."
    ),
    "failed": "This OpenRouter login already failed. Start a new login with openrouter_auth_start.",
}


class PendingLogins:
    """Logins started and not yet finished, by state. Each one may be taken once, before it expires."""

    def __init__(self, clock: Clock, random_bytes: RandomBytes, ttl_s: float = DEFAULT_TTL_S) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._clock = clock
        self._random = random_bytes
        self.ttl_s = ttl_s
        self._pending: dict[str, PendingLogin] = {}
        self._spent: dict[str, _Spent] = {}
        self._codes: dict[str, float] = {}

    def start(self, callback_url: Callable[[str], str], *, listening: bool = False) -> PendingLogin:
        """A new login; `callback_url` builds the redirect target from the new state."""
        self._prune()
        now = self._clock()
        state = make_state(self._random)
        while state in self._pending or state in self._spent:  # pragma: no cover - 192 random bits
            state = make_state(self._random)
        verifier = make_verifier(self._random)
        login = PendingLogin(
            state=state,
            challenge=challenge_s256(verifier),
            callback_url=callback_url(state),
            created_at=now,
            expires_at=now + self.ttl_s,
            listening=listening,
            verifier=verifier,
        )
        self._pending[state] = login
        return login

    def peek(self, state: str) -> PendingLogin | None:
        """The pending (unexpired) login with this state, without taking it."""
        login = self._pending.get(state)
        if login is None or self._clock() >= login.expires_at:
            return None
        return login

    def resolve_state(self, state: str | None) -> str:
        """The state to use when the host may omit it: the only pending login's."""
        if state:
            return state
        self._prune()
        live = list(self._pending)
        if not live:
            raise LoginError(
                "missing_state",
                "No OpenRouter login is pending. Start one with openrouter_auth_start, then finish it with "
                "the code and state the callback received.",
            )
        if len(live) > 1:
            raise LoginError(
                "ambiguous",
                f"{len(live)} OpenRouter logins are pending; pass the `state` the callback received to say "
                "which one this code finishes.",
            )
        return live[0]

    def take(self, state: str, code: str) -> PendingLogin:
        """Hand out the login (and its verifier) for exchanging `code`: once, before it expires."""
        now = self._clock()
        self._prune()
        code_hash = _code_hash(code)
        login = self._pending.pop(state, None)
        if login is None:
            spent = self._spent.get(state)
            if spent is not None:
                raise LoginError(spent.reason, _WHY[spent.reason])
            raise LoginError(
                "unknown_state",
                "The state does not belong to any OpenRouter login this sidecar started (it may come from "
                "another login, or the sidecar restarted since). Start a new login with "
                "openrouter_auth_start.",
            )
        if now >= login.expires_at:
            self._spend(state, "expired", now)
            raise LoginError("expired", _WHY["expired"])
        if code_hash in self._codes:
            self._spend(state, "failed", now)
            raise LoginError(
                "code_reused",
                "This authorization code was already exchanged once; a code can be used only once. Start a "
                "new login with openrouter_auth_start.",
            )
        self._codes[code_hash] = now + self.ttl_s
        self._spend(state, "already_used", now)
        return login

    def fail(self, state: str) -> PendingLogin | None:
        """End a login that cannot succeed any more (the listener saw an error); returns it if pending."""
        now = self._clock()
        login = self._pending.pop(state, None)
        if login is not None:
            self._spend(state, "failed", now)
        return login

    def expire(self, state: str) -> PendingLogin | None:
        """Remove a login whose time is up; returns it if it was still pending."""
        now = self._clock()
        login = self._pending.pop(state, None)
        if login is not None:
            self._spend(state, "expired", now)
        return login

    def pending_states(self) -> list[str]:
        self._prune()
        return list(self._pending)

    def _spend(self, state: str, reason: Failure, now: float) -> None:
        self._spent[state] = _Spent(reason, now + self.ttl_s)

    def _prune(self) -> None:
        now = self._clock()
        for state, login in list(self._pending.items()):
            if now >= login.expires_at:
                del self._pending[state]
                self._spend(state, "expired", now)
        for state, spent in list(self._spent.items()):
            if now >= spent.until:
                del self._spent[state]
        for code, until in list(self._codes.items()):
            if now >= until:
                del self._codes[code]
