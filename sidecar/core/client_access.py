"""What a gateway client key may do: its model allow-list, and its per-minute request limit.

Pure: no I/O; the clock is passed in.

Must not know: HTTP, how keys are stored, providers.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

WINDOW_S = 60.0


def allowed(patterns: Iterable[str], model: str) -> bool:
    """Whether `model` (`provider:model` or `router:<name>`) matches one of `patterns`; no patterns
    means every model. Patterns are shell-style (`openai:*`, `anthropic:claude-*`, `*`)."""
    patterns = list(patterns)
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(model, p) for p in patterns)


@dataclass(slots=True)
class MinuteWindow:
    """Requests and tokens in the last minute; `admit` says how long to wait when a limit is spent."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    _requests: deque[float] = field(default_factory=deque)
    _tokens: deque[tuple[float, int]] = field(default_factory=deque)

    def _trim(self, now: float) -> None:
        edge = now - WINDOW_S
        while self._requests and self._requests[0] <= edge:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= edge:
            self._tokens.popleft()

    def admit(self, now: float) -> float | None:
        """None and counts the request when it may go now, else the seconds until it may."""
        self._trim(now)
        if self.requests_per_minute is not None and len(self._requests) >= self.requests_per_minute:
            return max(self._requests[0] + WINDOW_S - now, 0.001)
        if self.tokens_per_minute is not None and sum(t for _, t in self._tokens) >= self.tokens_per_minute:
            return max(self._tokens[0][0] + WINDOW_S - now, 0.001)
        self._requests.append(now)
        return None

    def spend(self, now: float, tokens: int) -> None:
        if self.tokens_per_minute is not None and tokens > 0:
            self._tokens.append((now, tokens))
