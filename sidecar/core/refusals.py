"""Which request parameters each model has refused lately, so its next calls leave them out.

An upstream may refuse a parameter of a request it would answer without it, with a 400 that names
the parameter:

- `stream`: OpenAI refuses to stream o3, gpt-5 and others while the organization is not verified;
  the chat service then calls without streaming. The refusal is forgotten after `REMEMBER_S`,
  because verifying the organization lifts it (within 15 minutes, OpenAI says) and a streamed
  answer is better for everyone.
- `temperature`, `top_p`, `stop`, `reasoning_effort` (`DROPPABLE`): OpenAI's reasoning models
  take only their
  default sampling and no stop sequences, and which models do changes with each release (gpt-5
  refuses a temperature, gpt-5-chat-latest takes one; gpt-5.2 refuses `top_p`, gpt-5 took it;
  gpt-5.5 takes `stop` again), so the refusal itself is what is learned. The request is sent again
  without the parameter: the sampling ones only tune (as the Anthropic adapter leaves them out
  when thinking is on), and the sidecar applies the stop sequences itself
  (`core.stop_sequences`). Forgotten after `REMEMBER_S` too: a model that takes them again costs
  one refused call an hour. Anthropic's newer models refuse `temperature` and `top_p` together;
  their refusal is read as one of `top_p` (the temperature is kept). A model that does not reason
  refuses `reasoning_effort` (OpenAI's gpt-4o, xAI's grok-4): it is asked without the request's
  `reasoning`, and answers as it can.

Refusals are kept by the request's own field (`reasoning` for `reasoning_effort`).

At most `MAX_REMEMBERED` (provider, model, parameter) entries are kept.

Must not know: HTTP, providers' wire formats, the protocol.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

REMEMBER_S: Final = 3600.0
MAX_REMEMBERED: Final = 256
STREAM: Final = "stream"
DROPPABLE: Final = {
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop",
    "reasoning_effort": "reasoning",
}
"""The upstream parameters a request is sent again without when they are refused, and the request
field each comes from."""
_FIELDS: Final = tuple(dict.fromkeys(DROPPABLE.values()))


class Refusals:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def refuses(self, provider: str, model: str, param: str = STREAM) -> bool:
        """`model` refused `param` within the last `REMEMBER_S`."""
        if not self._until:
            return False
        key = (provider, model, param)
        until = self._until.get(key)
        if until is None:
            return False
        if self._clock() >= until:
            del self._until[key]
            return False
        return True

    def refused(self, provider: str, model: str) -> list[str]:
        """The request fields (`DROPPABLE`) `model` refused within the last `REMEMBER_S`."""
        if not self._until:
            return []
        return [f for f in _FIELDS if self.refuses(provider, model, f)]

    def note(self, provider: str, model: str, param: str = STREAM) -> None:
        key = (provider, model, param)
        self._until.pop(key, None)
        self._until[key] = self._clock() + REMEMBER_S
        while len(self._until) > MAX_REMEMBERED:
            self._until.popitem(last=False)
