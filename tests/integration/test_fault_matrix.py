"""The fault matrix: every way an upstream can fail, over every provider wire format.

OpenAI-compatible chat completions (SSE + `[DONE]`), Anthropic Messages (named SSE events),
Gemini (CRLF SSE without a terminator) and Ollama (NDJSON) each get, from a real fake server:
429 with and without Retry-After, 500, 503, 529, a reset mid-stream, a stall after the headers,
a stall mid-stream, a last event cut in the middle, a malformed chunk, a JSON body where a stream
was asked, an endless body and a huge chunk. Each must end as its kind within its bound (short
limits from config), and the next request on the same stack must succeed.

The faults are built from the provider's own healthy stream (captured on a first request), so
each is the format's exact bytes, cut or repeated.

A whole (non-streamed) answer, as the gateway asks for one, goes wrong its own ways, each tried
on the OpenAI, Anthropic and Gemini formats: an error status, a reset or a clean close midway
through the body, a stall after the head or midway, a body that is not JSON, one that never ends,
and a huge answer that must arrive whole.
"""

from __future__ import annotations

import itertools
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
import pytest

from sidecar.config import Config
from sidecar.core.catalog import PriceBook
from sidecar.errors import SidecarError
from sidecar.providers.http import HttpClient
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.chat import ChatService
from sidecar.services.context import asked_whole
from sidecar.services.limits import Resilience
from sidecar.services.pricing import Pricing
from sidecar.wire.chat import ChatResult, CompleteParams
from tests.fakes import anthropic as fake_anthropic
from tests.fakes import gemini as fake_gemini
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import FakeGemini
from tests.fakes.http import Abort, FakeUpstream, Part, Reply, Stall, json_reply
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_compat import FakeOpenAICompat

FIRST_BYTE_S = 0.6
IDLE_S = 0.4
MAX_ANSWER_CHARS = 20_000
HUGE_CHARS = 3_000_000  # one event of ~3 MB: under max_body_mb, so it must arrive whole
CONFIG = f"""
[retry]
max_attempts = 1
[timeouts]
connect_s = 2
first_byte_s = {FIRST_BYTE_S}
idle_s = {IDLE_S}
total_s = 20
[breaker]
failures = 1000
[http]
max_body_mb = 8
"""


@dataclass
class Format:
    name: str
    model: str
    fake: FakeUpstream
    env: dict[str, str]
    content_type: str
    whole: dict[str, Any]  # a complete non-streamed answer of this format, text "Whole answer"
    edit: Callable[[Callable[[list[bytes]], list[Part]] | None], None]

    def sse(self, parts: Any) -> Reply:
        return Reply(status=200, headers={"content-type": self.content_type}, chunks=parts)


def _openai_whole() -> dict[str, Any]:
    return {
        "id": "chatcmpl-whole",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Whole answer"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def _anthropic_whole() -> dict[str, Any]:
    return {
        "id": "msg_whole",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "Whole answer"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 2},
    }


def _gemini_whole() -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "Whole answer"}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "whole",
    }


def _ollama_whole() -> dict[str, Any]:
    return {
        "model": "llama3.2:latest",
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": "Whole answer"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 5,
        "eval_count": 2,
    }


def _set_edit_stream(fake: Any) -> Callable[[Any], None]:
    def edit(fn: Any) -> None:
        fake.edit_stream = fn

    return edit


def _set_edit_chat(fake: Any) -> Callable[[Any], None]:
    def edit(fn: Any) -> None:
        fake.edit_chat = fn

    return edit


@pytest.fixture(scope="module")
def formats() -> Iterator[dict[str, Format]]:
    with (
        FakeOpenAICompat("openai") as openai,
        FakeAnthropic() as anthropic,
        FakeGemini() as gemini,
        FakeOllama() as ollama,
    ):
        yield {
            "openai": Format(
                "openai",
                "openai:gpt-4o-mini",
                openai,
                {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": "sk-test-valid"},
                "text/event-stream",
                _openai_whole(),
                _set_edit_stream(openai),
            ),
            "anthropic": Format(
                "anthropic",
                "anthropic:claude-haiku-4-5",
                anthropic,
                {"ANTHROPIC_BASE_URL": anthropic.url, "ANTHROPIC_API_KEY": fake_anthropic.VALID_KEY},
                "text/event-stream; charset=utf-8",
                _anthropic_whole(),
                _set_edit_stream(anthropic),
            ),
            "gemini": Format(
                "gemini",
                "gemini:gemini-2.5-flash",
                gemini,
                {"GEMINI_BASE_URL": gemini.url, "GEMINI_API_KEY": fake_gemini.VALID_KEY},
                "text/event-stream",
                _gemini_whole(),
                _set_edit_stream(gemini),
            ),
            "ollama": Format(
                "ollama",
                "ollama:llama3.2:latest",
                ollama,
                {"OLLAMA_HOST": ollama.url},
                "application/x-ndjson",
                _ollama_whole(),
                _set_edit_chat(ollama),
            ),
        }


def _chat(fmt: Format, max_answer_chars: int, total_s: float = 20) -> tuple[ChatService, HttpClient]:
    toml = CONFIG.replace("total_s = 20", f"total_s = {total_s}") + f"max_answer_chars = {max_answer_chars}\n"
    config = msgspec.convert(tomllib.loads(toml), Config)
    http = HttpClient("llm-sidecar-test")
    env = fmt.env

    async def get_key(provider: str, env_var: str | None, account: str | None) -> str:
        if env_var and env.get(env_var):
            return env[env_var]
        raise SidecarError("missing_key", f"No key for {provider}.", provider=provider)

    providers = ProviderRegistry(config, env, http, get_key)
    resilience = Resilience(config, rand=lambda: 0.0)
    http.observers.append(resilience.tracker.observe)
    return ChatService(providers, Pricing(providers, PriceBook()), config, resilience), http


class Ctx:
    request_id = 1

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def notify(self, method: str, params: Any) -> None:
        self.events.append(msgspec.to_builtins(params.event))


def _params(fmt: Format, **more: Any) -> CompleteParams:
    return msgspec.convert(
        {"model": fmt.model, "messages": [{"role": "user", "content": "hello there"}], **more}, CompleteParams
    )


def _text_index(events: list[bytes]) -> int:
    """The first event that carries a piece of the answer ("Echo: hello there" in 4-char pieces)."""
    return next(i for i, e in enumerate(events) if b"Echo" in e)


def _truncated(events: list[bytes]) -> list[Part]:
    i = _text_index(events) + 1
    return [*events[:i], events[i][: len(events[i]) // 2]]


def _malformed(events: list[bytes], fmt: Format) -> list[Part]:
    i = _text_index(events)
    bad = b"{not json\n" if fmt.name == "ollama" else b"data: {not json\r\n\r\n"
    return [*events[:i], bad, *events[i:]]


def _endless(events: list[bytes]) -> Iterator[Part]:
    i = _text_index(events)
    # Bounded only so that a broken client can't keep the fake busy forever.
    return itertools.chain(events[:i], itertools.repeat(events[i], 1_000_000))


def _huge(events: list[bytes]) -> list[Part]:
    i = _text_index(events)
    return [*events[:i], events[i].replace(b"Echo", b"x" * HUGE_CHARS, 1), *events[i + 1 :]]


def _status_reply(fault: str, fmt: Format) -> Reply:
    """The error answer a status fault (`429_retry_after`, `500`…) names."""
    status = int(fault[:3])
    headers = {"retry-after": "1"} if fault == "429_retry_after" else {}
    return json_reply(status, _error_body(fmt, status), headers)


def _error_body(fmt: Format, status: int) -> Any:
    if fmt.name == "ollama":
        return {"error": f"upstream failure {status}"}
    kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": f"upstream failure {status}"}}


@dataclass(frozen=True)
class Fault:
    name: str
    kind: str | None  # None: the request succeeds
    bound_s: float
    message: str = ""


# The bounds rule out hangs: a stall lasts 30 s, and total_s (20 s) ends anything else; the slack
# is for a slow, loaded machine, where a few tenths over a limit are common.
SLACK_S = 4.0
FAST_S = 5.0
FAULTS = [
    Fault("429_retry_after", "rate_limited", FAST_S),
    Fault("429_no_retry_after", "rate_limited", FAST_S),
    Fault("500", "provider_error", FAST_S),
    Fault("503", "provider_error", FAST_S),
    Fault("529", "provider_error", FAST_S),
    Fault("reset_midstream", "network_error", FAST_S),
    Fault("stall_after_headers", "timeout", FIRST_BYTE_S + SLACK_S, "first-byte"),
    Fault("stall_midstream", "timeout", IDLE_S + SLACK_S, "idle"),
    Fault("truncated_event", "network_error", FAST_S),
    Fault("malformed_chunk", "provider_error", FAST_S),
    Fault("json_for_stream", None, FAST_S),
    Fault("endless_body", "provider_error", 15.0, "too large"),
    Fault("huge_chunk", None, 15.0),
]


def _script(fault: str, fmt: Format, healthy: list[bytes]) -> None:
    """Make the fake's next answer the fault."""
    fake = fmt.fake
    if fault.startswith(("429", "500", "503", "529")):
        fake.enqueue(_status_reply(fault, fmt))
    elif fault == "json_for_stream":
        fake.enqueue(json_reply(200, fmt.whole))
    elif fault == "stall_after_headers":
        fake.enqueue(fmt.sse([Stall(30)]))
    elif fault == "reset_midstream":
        fake.enqueue(fmt.sse([*healthy[: _text_index(healthy) + 1], Abort(reset=True)]))
    elif fault == "stall_midstream":
        fake.enqueue(fmt.sse([*healthy[: _text_index(healthy) + 1], Stall(30)]))
    elif fault == "truncated_event":
        fake.enqueue(fmt.sse(_truncated(healthy)))
    elif fault == "malformed_chunk":
        fake.enqueue(fmt.sse(_malformed(healthy, fmt)))
    elif fault == "endless_body":
        fake.enqueue(fmt.sse(_endless(healthy)))
    elif fault == "huge_chunk":
        fake.enqueue(fmt.sse(_huge(healthy)))
    else:  # pragma: no cover - a typo in FAULTS
        raise AssertionError(fault)


# `complete` streams from the upstream too: the faults where that matters, once more through it.
FOR_COMPLETE = {
    "stall_after_headers",
    "stall_midstream",
    "json_for_stream",
    "endless_body",
    "truncated_event",
}
CASES = [(f, "stream") for f in FAULTS] + [(f, "complete") for f in FAULTS if f.name in FOR_COMPLETE]


@pytest.mark.parametrize(("fault", "method"), CASES, ids=[f"{f.name}-{m}" for f, m in CASES])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "ollama"])
def test_fault_maps_to_its_kind_within_its_bound_then_the_next_request_succeeds(
    formats: dict[str, Format], provider: str, fault: Fault, method: str
) -> None:
    fmt = formats[provider]
    fmt.fake.clear()
    captured: list[list[bytes]] = []

    def capture(events: list[bytes]) -> list[Part]:
        captured.append(list(events))
        return list(events)

    async def body() -> None:
        # The huge chunk is under the caps (it must arrive whole); the endless body is not.
        chat, http = _chat(fmt, 2 * HUGE_CHARS if fault.name == "huge_chunk" else MAX_ANSWER_CHARS)
        try:
            fmt.edit(capture)
            healthy = await chat.stream(_params(fmt), Ctx())
            fmt.edit(None)
            assert healthy.text == "Echo: hello there"
            _script(fault.name, fmt, captured[0])
            ctx = Ctx()
            t0 = time.monotonic()
            outcome: ChatResult | SidecarError
            try:
                outcome = await getattr(chat, method)(_params(fmt), ctx)
            except SidecarError as exc:
                outcome = exc
            elapsed = time.monotonic() - t0
            assert elapsed < fault.bound_s, f"{fault.name} took {elapsed:.2f}s"
            if fault.kind is None:
                assert isinstance(outcome, ChatResult), outcome
                if fault.name == "json_for_stream":
                    assert outcome.text == "Whole answer" and outcome.finish_reason == "stop"
                    assert outcome.usage.output_tokens == 2
                else:
                    assert len(outcome.text) == HUGE_CHARS + len(": hello there")
                    joined = "".join(e["text"] for e in ctx.events if e["type"] == "text_delta")
                    assert joined == outcome.text or method == "complete"
            else:
                assert isinstance(outcome, SidecarError), outcome
                assert outcome.kind == fault.kind, outcome
                assert outcome.provider == provider
                assert fault.message in outcome.message, outcome.message
                if fault.name == "429_retry_after":
                    assert outcome.retry_after_s == 1.0
                if fault.name == "429_no_retry_after":
                    assert outcome.retry_after_s is None
            if fault.name == "429_retry_after":
                # The provider said when to come back; until then the sidecar holds requests back
                # unsent (tests/e2e of the upstream limits), so the next request comes after it.
                await anyio.sleep(1.0)
            again = await chat.stream(_params(fmt), Ctx())
            assert again.text == "Echo: hello there" and again.finish_reason == "stop"
        finally:
            fmt.edit(None)
            await http.aclose()

    anyio.run(body)


# A request the gateway sends whole (`asked_whole`): the same faults, in a whole answer's terms.
# Once its head has come, a whole answer's body is awaited as long as the answer's first byte
# (`total_s`): some servers send the head at once and the body when the answer is done. The
# stall after the head is therefore run with a short total_s.
WHOLE_TOTAL_S = 2.0
WHOLE_FAULTS = [
    Fault("429_retry_after", "rate_limited", FAST_S),
    Fault("500", "provider_error", FAST_S),
    Fault("529", "provider_error", FAST_S),
    Fault("reset_midbody", "network_error", FAST_S),
    Fault("stall_after_headers", "timeout", WHOLE_TOTAL_S + SLACK_S),
    Fault("stall_midbody", "timeout", IDLE_S + SLACK_S, "idle"),
    Fault("cut_body", "network_error", FAST_S),
    Fault("malformed_body", "provider_error", FAST_S, "not valid JSON"),
    Fault("endless_body", "provider_error", 15.0, "too large"),
    Fault("huge_answer", None, 15.0),
]


def _whole_script(fault: str, fmt: Format) -> None:
    """Make the fake's next answer the fault, as a whole (non-streamed) answer goes wrong."""
    fake = fmt.fake
    body = msgspec.json.encode(fmt.whole)
    half = body[: len(body) // 2]
    json_type = {"content-type": "application/json"}
    if fault.startswith(("429", "500", "529")):
        fake.enqueue(_status_reply(fault, fmt))
    elif fault == "reset_midbody":
        fake.enqueue(Reply(200, json_type, chunks=[half, Abort(reset=True)]))
    elif fault == "stall_after_headers":
        fake.enqueue(Reply(200, json_type, chunks=[Stall(30)]))
    elif fault == "stall_midbody":
        fake.enqueue(Reply(200, json_type, chunks=[half, Stall(30)]))
    elif fault == "cut_body":
        fake.enqueue(Reply(200, json_type, chunks=[half, Abort()]))
    elif fault == "malformed_body":
        fake.enqueue(Reply(200, json_type, body=b"{not json"))
    elif fault == "endless_body":
        fake.enqueue(
            Reply(200, json_type, chunks=itertools.chain([half], itertools.repeat(b" " * 65536, 10_000)))
        )
    elif fault == "huge_answer":
        fake.enqueue(Reply(200, json_type, body=body.replace(b"Whole answer", b"x" * HUGE_CHARS, 1)))
    else:  # pragma: no cover - a typo in WHOLE_FAULTS
        raise AssertionError(fault)


@pytest.mark.parametrize("fault", WHOLE_FAULTS, ids=[f.name for f in WHOLE_FAULTS])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_a_whole_answers_fault_maps_to_its_kind_within_its_bound(
    formats: dict[str, Format], provider: str, fault: Fault
) -> None:
    fmt = formats[provider]
    fmt.fake.clear()

    async def body() -> None:
        total_s = WHOLE_TOTAL_S if fault.name == "stall_after_headers" else 20
        chat, http = _chat(fmt, 2 * HUGE_CHARS if fault.name == "huge_answer" else MAX_ANSWER_CHARS, total_s)
        token = asked_whole.set(True)
        try:
            _whole_script(fault.name, fmt)
            t0 = time.monotonic()
            outcome: ChatResult | SidecarError
            try:
                outcome = await chat.complete(_params(fmt, max_tokens=1024), Ctx())
            except SidecarError as exc:
                outcome = exc
            elapsed = time.monotonic() - t0
            assert fmt.fake.requests[-1].json().get("stream") is not True  # asked whole
            assert elapsed < fault.bound_s, f"{fault.name} took {elapsed:.2f}s"
            if fault.kind is None:
                assert isinstance(outcome, ChatResult), outcome
                assert len(outcome.text) == HUGE_CHARS
            else:
                assert isinstance(outcome, SidecarError), outcome
                assert (outcome.kind, outcome.provider) == (fault.kind, provider), outcome
                assert fault.message in outcome.message, outcome.message
            if fault.name == "429_retry_after":
                await anyio.sleep(1.0)
            again = await chat.complete(_params(fmt, max_tokens=1024), Ctx())
            assert again.text == "Echo: hello there" and again.finish_reason == "stop"
        finally:
            asked_whole.reset(token)
            await http.aclose()

    anyio.run(body)
