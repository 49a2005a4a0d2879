"""Stop sequences applied by the sidecar, for a model that refuses the request's `stop`.

OpenAI's reasoning models (gpt-5, o3, o4-mini...) refuse `stop` with a 400, and agents rely on it
(a ReAct loop stops the model at "Observation:"). When the upstream refuses it, the request is
sent without it (`core.refusals`) and the answer's text is cut here instead: it ends before the
first occurrence of any stop sequence, as the provider would have ended it, and the rest of the
answer is not read.

`StopCutter.feed` takes each piece of text as it arrives and answers what may be passed on now:
the end of a piece that could be the beginning of a stop sequence is held back until the next
piece says whether it is one (a stop sequence may arrive split across pieces). `flush` gives
back what was held when the text ends without one.

Must not know: providers, events, I/O.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopCutter:
    __slots__ = ("_held", "_longest", "_stops", "matched")

    def __init__(self, stops: str | Sequence[str] | None) -> None:
        """`stops` as a request gives them: one sequence, several, or none."""
        self._stops = tuple(s for s in ([stops] if isinstance(stops, str) else stops or ()) if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""
        self.matched: str | None = None  # the stop sequence the text ended at

    @property
    def stopped(self) -> bool:
        return self.matched is not None

    def feed(self, text: str) -> str:
        """The text that can be passed on now, from `text` and what was held before it. Once a
        stop sequence is found, `stopped` is true and nothing more is answered."""
        if self.stopped:
            return ""
        text = self._held + text
        found = [(i, s) for s in self._stops if (i := text.find(s)) >= 0]
        if found:
            at, self.matched = min(found, key=lambda f: f[0])
            self._held = ""
            return text[:at]
        keep = self._partial_stop(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What was held back, now that the text has ended without a stop sequence."""
        held, self._held = self._held, ""
        return held

    def _partial_stop(self, text: str) -> int:
        """The length of the longest end of `text` that begins some stop sequence."""
        for size in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-size:]
            if any(s.startswith(tail) for s in self._stops):
                return size
        return 0
