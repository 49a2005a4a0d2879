"""A fake upstream's request limit as providers report it: requests per minute, refilled
continuously, so `remaining` comes back as time passes and `reset` is the time until the limit is
whole again (OpenAI: "the time until the rate limit resets to its initial state").

A count that never refills would report the limit spent for good after `per_minute` requests
(a benchmark's few thousand), and the sidecar would then rightly hold every request until a reset
that never brings anything back.

Must not know: HTTP, any provider's header names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RequestLimit:
    """A bucket of `per_minute` requests that refills at `per_minute / 60` a second."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._level = float(per_minute)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> tuple[int, float]:
        """Count one request: what remains (whole requests) and the seconds until the bucket is full."""
        with self._lock:
            now = self._clock()
            self._level = min(float(self.per_minute), self._level + (now - self._at) * self._rate)
            self._at = now
            self._level = max(0.0, self._level - 1.0)
            return int(self._level), (self.per_minute - self._level) / self._rate


def go_duration(seconds: float) -> str:
    """`seconds` as OpenAI writes its resets (Go's `time.Duration`): 6m0s, 1.5s, 12ms."""
    if seconds < 1.0:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text
