"""How many `ollama_pull/progress` notifications a host gets: a pure coalescing policy.

Ollama reports a layer's download every ~60 ms, several layers at once; a UI needs a few
updates a second. `Coalescer.offer(progress, now)` returns what to send now; `finish()` returns
what is still held when the stream ends. The clock is injected (`now`), so tests drive it.

The rules, per key (a layer's digest; lines without a digest share one key):

* A change of status (the first line of a layer, "verifying sha256 digest", "success", ...) is
  sent at once. A status change on a line without a digest (a new phase of the pull) first sends
  every figure still held, so each layer's last figure comes before the next phase.
* A layer's final figure (`completed >= total`) is sent at once.
* Other figures are sent when `interval_s` has passed since the key's last notification; in
  between, only the newest is held, and it goes out with the next line that finds its time
  has come (of any key), or at `finish()`.

So a key gets at most one progress figure per interval (plus its status changes and its final
figure), figures of one key go out in the order they arrived, and nothing that matters is lost.

Must not know: Ollama's HTTP API, wire types, clocks, I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_INTERVAL_S: Final = 0.25  # at most ~4 figures per second per layer


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report of a pull, as Ollama words it."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    @property
    def final(self) -> bool:
        """The layer is complete: its last figure."""
        return self.total is not None and self.completed is not None and self.completed >= self.total


class Coalescer:
    """Thins a stream of `Progress` to a rate a UI can draw (rules in the module docstring)."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._status: dict[str | None, str] = {}
        self._sent_at: dict[str | None, float] = {}
        self._pending: dict[str | None, Progress] = {}

    def offer(self, progress: Progress, now: float) -> list[Progress]:
        """The notifications to send now that `progress` arrived at time `now`."""
        key = progress.digest
        out: list[Progress] = []
        if self._status.get(key) != progress.status:
            if key is None:
                out.extend(self._drain(now))
            self._pending.pop(key, None)
            self._send(progress, now, out)
        elif progress.final or now - self._sent_at.get(key, float("-inf")) >= self.interval_s:
            self._pending.pop(key, None)
            self._send(progress, now, out)
        else:
            self._pending[key] = progress
        for other, held in list(self._pending.items()):
            if other != key and now - self._sent_at.get(other, float("-inf")) >= self.interval_s:
                del self._pending[other]
                self._send(held, now, out)
        return out

    def finish(self) -> list[Progress]:
        """Everything still held, in arrival order (call once, when the stream ends)."""
        return self._drain(None)

    def _send(self, progress: Progress, now: float, out: list[Progress]) -> None:
        self._status[progress.digest] = progress.status
        self._sent_at[progress.digest] = now
        out.append(progress)

    def _drain(self, now: float | None) -> list[Progress]:
        held = list(self._pending.values())
        self._pending.clear()
        if now is not None:
            for progress in held:
                self._sent_at[progress.digest] = now
        return held
