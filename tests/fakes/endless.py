"""Streams that never end, for tests of what the sidecar does when nothing stops on its own.

`endless_openai_stream()` is a one-shot `Reply` (queue it with `fake.enqueue`) in OpenAI's chat
SSE format whose deltas are `"<n> "` for n = 0, 1, 2, ... forever (or until the client goes away
or the fake stops), so a test can check that every delta arrived, in order, with none missing.
Written as a generator, so the fake sends each delta as it is produced and TCP flow control holds
the fake back when the sidecar stops reading.

Must not know: the sidecar.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

from tests.fakes.http import Part, Pause, Reply


def endless_openai_stream(*, model: str = "gpt-4o-mini", pause_s: float = 0.0, batch: int = 1) -> Reply:
    """Numbered text deltas forever; `batch` deltas per HTTP chunk, `pause_s` between chunks."""

    def parts() -> Iterator[Part]:
        head = {"id": "chatcmpl-endless", "object": "chat.completion.chunk", "created": 0, "model": model}
        first = {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        yield b"data: " + json.dumps(first).encode() + b"\n\n"
        counter = itertools.count()
        while True:
            chunk = b"".join(
                b"data: "
                + json.dumps({**head, "choices": [{"index": 0, "delta": {"content": f"{n} "}}]}).encode()
                + b"\n\n"
                for n in itertools.islice(counter, batch)
            )
            yield chunk
            if pause_s:
                yield Pause(pause_s)

    return Reply(status=200, headers={"content-type": "text/event-stream"}, chunks=parts())
