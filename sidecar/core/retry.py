"""When to try a failed request again, and how long to wait first.

The rules:

- Only transient kinds are retried: `rate_limited` (429), `provider_error` (5xx, Anthropic's 529),
  `network_error` and `timeout`. Never `auth_failed`, `invalid_request`, `missing_key`,
  `quota_exceeded`, `model_not_found`, `budget_exceeded`, `cancelled` or anything else.
- Never once the first token has reached the host: the host would see the answer twice.
- At most `max_attempts` tries of one model (the first one included).
- The wait is exponential backoff with full jitter: uniform in [0, min(max_delay, base * 2^(n-1))].
  When the provider said how long to wait (`Retry-After`, Gemini's `RetryInfo`), that wait is
  honoured instead, up to `max_retry_after_s`; a provider asking for longer is not retried (the
  error goes to the host, or the request moves to its fallback, with `retry_after_s`).
- A retry that could not start before the request's deadline is not made.

Must not know: I/O, clocks, randomness (the random source is injected), the protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sidecar.errors import TRANSIENT_KINDS

RETRYABLE_KINDS: Final = TRANSIENT_KINDS
Random = Callable[[], float]  # uniform in [0, 1)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    retry: bool
    delay_s: float = 0.0
    reason: str = ""


def retryable(kind: str, *, started: bool) -> bool:
    """Whether an error of `kind` may be retried at all (before looking at budgets and waits)."""
    return not started and kind in RETRYABLE_KINDS


def backoff_s(attempt: int, policy: RetryPolicy, random: Random) -> float:
    """The full-jitter wait after failed try number `attempt` (1-based)."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * (2.0 ** max(0, attempt - 1)))
    return max(0.0, min(1.0, random())) * ceiling


def decide(
    policy: RetryPolicy,
    *,
    attempt: int,
    kind: str,
    started: bool,
    retry_after_s: float | None,
    random: Random,
    time_left_s: float | None = None,
) -> Decision:
    """Should try number `attempt` (1-based), which failed with `kind`, be followed by another?"""
    if started:
        return Decision(False, reason="the answer had already started reaching the host")
    if kind not in RETRYABLE_KINDS:
        return Decision(False, reason=f"{kind} is not cured by retrying")
    if attempt >= policy.max_attempts:
        return Decision(False, reason=f"all {policy.max_attempts} attempts were used")
    if retry_after_s is not None:
        if retry_after_s > policy.max_retry_after_s:
            return Decision(False, reason=f"the provider asked for a {retry_after_s:g}s wait, over the cap")
        delay = retry_after_s
    else:
        delay = backoff_s(attempt, policy, random)
    if time_left_s is not None and delay >= time_left_s:
        return Decision(False, reason="the request's time limit would pass before the retry")
    return Decision(True, delay_s=delay)
