"""What the bench modules share: the pre-rendered OpenAI stream the relay benchmarks send (one
body, so their figures measure the same stream), how a fake serves it, and the table they print."""

from __future__ import annotations

from collections.abc import Sequence

from tests.fakes.http import Reply
from tests.fakes.openai_compat import FakeOpenAICompat

# The request limit the benches' fakes report: one no bench reaches (a real key's 5,000 a minute is
# spent by a throughput run), since they measure the sidecar, not its pacing against a spent limit.
BENCH_REQUESTS_PER_MINUTE = 100_000_000


def stream_body(pieces: int) -> bytes:
    """A recorded-shape OpenAI stream of `pieces` text deltas, pre-rendered so the fake upstream
    sends it as fast as the socket allows and the relay, not the fake, is what is measured."""
    head = (
        b'data: {"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"delta":{"content":"tok "},"logprobs":null,"finish_reason":null}],'
        b'"usage":null,"obfuscation":"abcd"}\n\n'
    )
    tail = (
        b'data: {"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n'
        b'data: {"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        b'"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":'
        + str(pieces).encode()
        + b',"total_tokens":9}}\n\n'
        b"data: [DONE]\n\n"
    )
    return head * pieces + tail


def enqueue_stream(fake: FakeOpenAICompat, body: bytes) -> None:
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    fake.enqueue(Reply(headers={"content-type": "text/event-stream; charset=utf-8"}, chunks=chunks))


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Rows of (measure, sidecar, floor, ratio), aligned under a header."""
    head = ("measure", "sidecar", "floor", "ratio")
    width = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print(" | ".join(h.ljust(w) for h, w in zip(head, width, strict=True)))
    print("-|-".join("-" * w for w in width))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, width, strict=True)))
