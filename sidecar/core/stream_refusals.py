"""Which models have refused to stream lately, so their next calls skip the refused attempt.

An upstream may refuse to stream a model it would answer whole: OpenAI does so for o3, gpt-5 and
others while the organization is not verified. The chat service then calls without streaming and
notes the model here; later calls go straight to the call that works. A refusal is forgotten after
`REMEMBER_S`, because verifying the organization lifts it (within 15 minutes, OpenAI says) and a
streamed answer is better for everyone. At most `MAX_REMEMBERED` models are kept.

Must not know: HTTP, providers' wire formats, the protocol.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

REMEMBER_S: Final = 3600.0
MAX_REMEMBERED: Final = 256


class StreamRefusals:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: OrderedDict[tuple[str, str], float] = OrderedDict()

    def refuses(self, provider: str, model: str) -> bool:
        """`model` refused to stream within the last `REMEMBER_S`."""
        if not self._until:
            return False
        key = (provider, model)
        until = self._until.get(key)
        if until is None:
            return False
        if self._clock() >= until:
            del self._until[key]
            return False
        return True

    def note(self, provider: str, model: str) -> None:
        key = (provider, model)
        self._until.pop(key, None)
        self._until[key] = self._clock() + REMEMBER_S
        while len(self._until) > MAX_REMEMBERED:
            self._until.popitem(last=False)
