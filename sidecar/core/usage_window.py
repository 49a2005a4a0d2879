"""Client-side limits over a sliding window: input tokens, output tokens and USD spent in the last
`window_s` seconds, for one provider or for all of them together.

A request is refused before it is sent when what the window already holds has reached a limit, or
when the request's estimate would take it past one (its input tokens and input cost are estimated;
its output counts `max_tokens` when it sets one). What a request really used is added when it ends.
Pure: the clock is passed in.

Must not know: I/O, the protocol, providers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

Measure = Literal["input_tokens", "output_tokens", "usd"]


@dataclass(frozen=True, slots=True)
class WindowSpec:
    window_s: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    usd: float | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.input_tokens, self.output_tokens, self.usd))


@dataclass(frozen=True, slots=True)
class WindowRefusal:
    measure: Measure
    limit: float
    used: float
    estimate: float
    window_s: float
    retry_after_s: float

    def message(self, scope: str) -> str:
        what = {"input_tokens": "input tokens", "output_tokens": "output tokens", "usd": "USD"}[self.measure]
        used = f"{self.used:.6g}" if self.measure == "usd" else f"{int(self.used)}"
        return (
            f"{scope} reached its client-side limit of {self.limit:g} {what} per {self.window_s:g}s "
            f"({used} used, this request needs about {self.estimate:.6g} more); retry in "
            f"{self.retry_after_s:.1f}s, use another provider, or raise the limit under [limits] "
            "in config.toml."
        )


class UsageWindow:
    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self._events: deque[tuple[float, int, int, float]] = deque()

    def _trim(self, now: float) -> None:
        horizon = now - self.spec.window_s
        while self._events and self._events[0][0] <= horizon:
            self._events.popleft()

    def totals(self, now: float) -> tuple[int, int, float]:
        self._trim(now)
        return (
            sum(e[1] for e in self._events),
            sum(e[2] for e in self._events),
            sum(e[3] for e in self._events),
        )

    def check(self, now: float, input_tokens: int, output_tokens: int, usd: float) -> WindowRefusal | None:
        used_in, used_out, used_usd = self.totals(now)
        spec = self.spec
        for measure, limit, used, need in (
            ("input_tokens", spec.input_tokens, used_in, input_tokens),
            ("output_tokens", spec.output_tokens, used_out, output_tokens),
            ("usd", spec.usd, used_usd, usd),
        ):
            if limit is None:
                continue
            if used >= limit or used + need > limit:
                return WindowRefusal(
                    measure,  # type: ignore[arg-type]
                    limit,
                    used,
                    need,
                    spec.window_s,
                    self._retry_after(now),
                )
        return None

    def add(self, now: float, input_tokens: int, output_tokens: int, usd: float) -> None:
        self._trim(now)
        self._events.append((now, input_tokens, output_tokens, usd))

    def _retry_after(self, now: float) -> float:
        if not self._events:
            return self.spec.window_s
        return max(0.0, self._events[0][0] + self.spec.window_s - now)
