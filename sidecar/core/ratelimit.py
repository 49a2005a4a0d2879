"""What each provider has told us about its rate limits, learned from the headers of every response.

Every provider says it differently, and this module reads them all into one `ProviderLimits`:

- OpenAI (and xAI): `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as Go-style
  durations (`1s`, `6m0s`, `1h2m3s`, `12ms`).
- Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`,
  resets as RFC 3339 instants.
- OpenRouter's own 429s: `x-ratelimit-{limit,remaining,reset}` (reset in epoch milliseconds).
- Everyone: `retry-after-ms` (float ms) and `retry-after` (seconds or an HTTP date); Gemini sends
  no headers at all, only `RetryInfo` in an error body, which callers pass to `note_retry_after`.

Reset times are kept as absolute instants (epoch seconds, UTC) computed with an injected clock, so
the state stays right however long after the response a host asks for it.

Must not know: HTTP clients, the protocol, which provider is configured; it does no I/O.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Final, cast

import msgspec

Clock = Callable[[], float]  # epoch seconds (time.time)

_GO_DURATION: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|μs|ns|m|s)")
_GO_UNITS: Final = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ns": 1e-9,
}
_PREFIXES: Final = ("x-ratelimit-", "anthropic-ratelimit-", "retry-after")
# Anthropic's window names -> ours; order matters ("input-tokens" before "tokens").
_ANTHROPIC_WINDOWS: Final = (
    ("input-tokens", "input_tokens"),
    ("output-tokens", "output_tokens"),
    ("requests", "requests"),
    ("tokens", "tokens"),
)
_OPENAI_WINDOWS: Final = {"requests": "requests", "tokens": "tokens"}
WINDOWS: Final = ("requests", "tokens", "input_tokens", "output_tokens")


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go `time.Duration` string (`6m0s`, `1h2m3s`, `12ms`, `1.5s`, `0s`); None if not one."""
    text = text.strip()
    if not text:
        return None
    if text == "0":
        return 0.0
    pos = 0
    total = 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


def parse_rfc3339(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 instant (`2025-08-21T12:40:59Z`, offsets and fractions allowed)."""
    value = text.strip()
    if not value:
        return None
    if value[-1] in "zZ":
        value = value[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_reset(text: str, now: float) -> float | None:
    """An absolute reset instant from any provider's reset value.

    Accepts a Go duration (`6m0s`), plain seconds (`20`, `1.5`), epoch seconds or milliseconds
    (OpenRouter's `1741305600000`) and RFC 3339 instants.
    """
    spec = _reset_spec(text)
    if spec is None:
        return None
    relative, value = spec
    return now + value if relative else value


@functools.lru_cache(maxsize=512)
def _reset_spec(text: str) -> tuple[bool, float] | None:
    """A reset value as (relative, seconds): an offset from now, or an epoch instant. Cached: a
    provider repeats the same few values (`1s`, `6m0s`) on every response."""
    text = text.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if number >= 1e12:  # epoch milliseconds
            return False, number / 1000.0
        if number >= 1e9:  # epoch seconds
            return False, number
        return True, max(0.0, number)
    seconds = parse_go_duration(text)
    if seconds is not None:
        return True, seconds
    instant = parse_rfc3339(text)
    return None if instant is None else (False, instant)


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from `retry-after-ms` (checked first) or `retry-after` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # rare (an HTTP date) and ~9 ms to import: not at start-up

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    if text.isdigit():  # the usual case, without an exception or a float
        return int(text)
    try:
        return int(float(text.strip()))
    except ValueError:
        return None


class Window(msgspec.Struct, frozen=True):
    """One limit a provider reported: its size, what is left, and when it refills (epoch seconds).

    `next_at`, for a window of requests that refills continuously (OpenAI's and Anthropic's token
    buckets, whose reset is the time until the bucket is whole again), is when one request is
    back once nothing remains: a `limit`-th of the way to the reset; `every_s` is that refill time
    of one request."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None
    next_at: float | None = None
    every_s: float | None = None

    def merged(self, newer: Window) -> Window:
        if newer.limit is not None and newer.remaining is not None and newer.reset_at is not None:
            return newer  # says it all (the usual case): nothing of the older one remains
        return Window(
            limit=newer.limit if newer.limit is not None else self.limit,
            remaining=newer.remaining if newer.remaining is not None else self.remaining,
            reset_at=newer.reset_at if newer.reset_at is not None else self.reset_at,
            next_at=newer.next_at if newer.remaining is not None else self.next_at,
            every_s=newer.every_s if newer.remaining is not None else self.every_s,
        )

    @property
    def empty(self) -> bool:
        return self.limit is None and self.remaining is None and self.reset_at is None


class Observation(msgspec.Struct, frozen=True):
    """What one response's headers said."""

    windows: dict[str, Window] = msgspec.field(default_factory=dict)
    retry_after_s: float | None = None

    @property
    def empty(self) -> bool:
        return not self.windows and self.retry_after_s is None


_NOTHING: Final = Observation()  # what a response without rate-limit headers says (never mutated)


class ProviderLimits(msgspec.Struct, frozen=True):
    """Everything known about one provider's upstream limits."""

    provider: str
    windows: dict[str, Window] = msgspec.field(default_factory=dict)
    retry_at: float | None = None  # the provider asked us not to send before this instant
    updated_at: float | None = None
    last_status: int | None = None

    def retry_after_s(self, now: float) -> float | None:
        """Seconds still to wait, per the provider's last Retry-After; None once it has passed."""
        if self.retry_at is None or self.retry_at <= now:
            return None
        return self.retry_at - now

    def blocked_s(self, now: float) -> float | None:
        """Seconds before a request can be accepted, by what the provider last said: a Retry-After
        still running, or a window it reported exhausted (nothing remaining) until its reset.
        None when nothing says to wait."""
        blocked = self.blocked(now)
        return blocked[0] if blocked is not None else None

    def blocked(self, now: float) -> tuple[float, float] | None:
        """`blocked_s`, and the refill time of one request when what is waited for is one request
        back in a bucket (0 when the wait ends with a whole window, or a Retry-After)."""
        if self.retry_at is not None:
            # An explicit Retry-After is the provider's own answer to "when": it beats the resets
            # of the windows reported beside it (OpenAI's 429 says 0 remaining until 1s, retry in 400ms).
            return (self.retry_at - now, 0.0) if self.retry_at > now else None
        longest: tuple[float, float] | None = None
        for window in self.windows.values():
            if window.remaining == 0 and window.reset_at is not None:
                until = window.reset_at if window.next_at is None else window.next_at
                if until > now and (longest is None or until - now > longest[0]):
                    longest = (until - now, window.every_s or 0.0)
        return longest


class Pacer:
    """Spaces the requests that wait for a spent bucket one refill apart, per provider.

    When a provider says no request remains and one is back in 12 ms, every request waiting
    then would otherwise go at that instant, and all but one meet a 429. Each waiter takes the
    next free instant instead, and so does a request that comes once the first is back but
    before any newer answer: those instants are the queue's. A waiter that gives up leaves its
    instant unused: the pace errs on the slow side, never the fast one."""

    def __init__(self) -> None:
        # provider -> (the next free instant, the refill time, the answer the pace follows)
        self._paced: dict[str, tuple[float, float, ProviderLimits]] = {}

    def wait_s(self, provider: str, now: float, wait: float, every_s: float) -> float:
        """How long one more request waits: `wait`, or longer behind the requests already paced."""
        paced = self._paced.get(provider)
        if every_s <= 0 or paced is None:
            return wait
        return max(wait, paced[0] - now)

    def queued(self, provider: str, limits: ProviderLimits, now: float) -> tuple[float, float] | None:
        """When the provider's limits no longer say to wait but no newer answer has come since the
        pace began: the wait behind the requests still paced, and the refill time."""
        paced = self._paced.get(provider)
        if paced is None or paced[2] is not limits or paced[0] <= now:
            return None
        return paced[0] - now, paced[1]

    def take(self, provider: str, limits: ProviderLimits, at: float, every_s: float) -> None:
        """A request goes at `at`, by what `limits` said: the next one goes `every_s` later."""
        if every_s > 0:
            paced = self._paced.get(provider)
            free_at = at + every_s if paced is None else max(paced[0], at + every_s)
            self._paced[provider] = (free_at, every_s, limits)


def _relevant(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[dict[str, str], bool]:
    """The rate-limit headers, by lowercase name, and whether any is Anthropic's."""
    # Duck-typed, not `isinstance(headers, Mapping)`: an ABC check on a response's header
    # multidict (a virtual subclass) is slow.
    get_items = getattr(headers, "items", None)
    items = cast("Iterable[tuple[str, str]]", get_items() if get_items is not None else headers)
    found: dict[str, str] = {}
    anthropic = False
    names = _NAMES
    for k, v in items:
        lower = names.get(k, _UNSEEN)
        if lower is _UNSEEN:
            lower = _name(k)
        if lower is not None:
            found[lower] = v
            if lower[0] == "a":
                anthropic = True
    return found, anthropic


def _name(header: str) -> str | None:
    """A header's lowercase name if it is a rate-limit one, else None; remembered, since every
    response of a provider repeats the same names (a bounded memo: names come from upstreams)."""
    lower = header.lower()
    found = lower if lower.startswith(_PREFIXES) else None
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[str(header)] = found
    return found


_NAMES: Final[dict[str, str | None]] = {}
_NAMES_MAX: Final = 1024
_UNSEEN: Final = ""  # a marker: no header is named the empty string


_RETRY_AFTER: Final = "retry-after"
_RETRY_AFTER_MS: Final = "retry-after-ms"
# The header names of each window, built once: (ours, limit, remaining, reset).
_ANTHROPIC_KEYS: Final = tuple(
    (
        ours,
        f"anthropic-ratelimit-{theirs}-limit",
        f"anthropic-ratelimit-{theirs}-remaining",
        f"anthropic-ratelimit-{theirs}-reset",
    )
    for theirs, ours in _ANTHROPIC_WINDOWS
)
_OPENAI_KEYS: Final = tuple(
    (ours, f"x-ratelimit-limit-{theirs}", f"x-ratelimit-remaining-{theirs}", f"x-ratelimit-reset-{theirs}")
    for theirs, ours in _OPENAI_WINDOWS.items()
)
_PLAIN_KEYS: Final = ("requests", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def _window(
    h: dict[str, str], keys: tuple[str, str, str, str], now: float, bucket: bool = False
) -> Window | None:
    """One window from its headers; `bucket`: it refills continuously, one request at a time."""
    _, limit_key, remaining_key, reset_key = keys
    limit, remaining, reset = h.get(limit_key), h.get(remaining_key), h.get(reset_key)
    if limit is None and remaining is None and not reset:
        return None
    limit_n, remaining_n = _int(limit), _int(remaining)
    reset_at = parse_reset(reset, now) if reset else None
    if limit_n is None and remaining_n is None and reset_at is None:
        return None
    next_at = every_s = None
    if bucket and remaining_n == 0 and limit_n and reset_at is not None:
        every_s = max(0.0, reset_at - now) / limit_n
        next_at = now + every_s
    return Window(limit_n, remaining_n, reset_at, next_at, every_s)


def parse_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]], now: float) -> Observation:
    """Read every rate-limit header any provider sends; `now` is epoch seconds."""
    h, anthropic = _relevant(headers)
    if not h:
        return _NOTHING
    windows: dict[str, Window] = {}
    # OpenAI's and Anthropic's request limits are token buckets; OpenRouter's platform limit (the
    # plain headers: one window of requests) is a fixed window, whole again only at its reset.
    if anthropic:
        for keys in _ANTHROPIC_KEYS:
            window = _window(h, keys, now, bucket=keys[0] == "requests")
            if window is not None:
                windows[keys[0]] = window
    for keys in (*_OPENAI_KEYS, _PLAIN_KEYS):
        window = _window(h, keys, now, bucket=keys is not _PLAIN_KEYS and keys[0] == "requests")
        if window is not None:
            ours = keys[0]
            older = windows.get(ours)
            windows[ours] = window if older is None else older.merged(window)
    retry_after_s = parse_retry_after(h, now) if _RETRY_AFTER in h or _RETRY_AFTER_MS in h else None
    return Observation(windows=windows, retry_after_s=retry_after_s)


class RateLimitTracker:
    """The latest rate-limit state of every provider, fed by response headers and error bodies."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._state: dict[str, ProviderLimits] = {}

    def observe(self, provider: str, status: int, headers: Mapping[str, str]) -> None:
        """An `HttpClient` headers observer: called for every upstream response. Never raises."""
        try:
            now = self._clock()
            seen = parse_headers(headers, now)
            if seen.empty and status != 429:
                return
            self._apply(provider, seen, status, now)
        except Exception:  # a malformed header must never fail a request
            return

    def note_retry_after(self, provider: str, seconds: float) -> None:
        """A wait the provider asked for outside the headers (Gemini's `RetryInfo` in the body)."""
        now = self._clock()
        self._apply(provider, Observation(retry_after_s=max(0.0, seconds)), None, now)

    def _apply(self, provider: str, seen: Observation, status: int | None, now: float) -> None:
        old = self._state.get(provider) or ProviderLimits(provider)
        windows = dict(old.windows)
        for name, window in seen.windows.items():
            older = windows.get(name)
            windows[name] = window if older is None else older.merged(window)
        retry_at = old.retry_at
        if seen.retry_after_s is not None:
            retry_at = now + seen.retry_after_s
        elif status is not None and status < 300:
            retry_at = None  # a success means the wait is over
        self._state[provider] = ProviderLimits(
            provider,
            windows,
            retry_at,
            now,
            status if status is not None else old.last_status,
        )

    def get(self, provider: str) -> ProviderLimits | None:
        return self._state.get(provider)

    def all(self) -> dict[str, ProviderLimits]:
        return dict(self._state)

    def now(self) -> float:
        return self._clock()
