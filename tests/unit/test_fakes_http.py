"""The fake-upstream framework (tests/fakes/http.py) and the shared fake model, over real sockets."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx2
import pytest

from tests.fakes.behaviour import Conversation, Turn, plan
from tests.fakes.http import (
    Abort,
    FakeUpstream,
    Pause,
    RecordedRequest,
    Reply,
    Stall,
    json_reply,
    ndjson_reply,
    split_sse_events,
    sse_comment,
    sse_event,
    sse_reply,
    text_reply,
)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=5.0) as c:
        yield c


def _echo(req: RecordedRequest) -> Reply:
    return json_reply(200, {"params": req.path_params, "query": req.query})


# -------------------- routing and recording


def test_template_route_records_the_request(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.route("POST", "/v1/models/{model}/run", _echo)

    r = client.post(f"{fake.url}/v1/models/m-1/run?alt=sse&x=", json={"a": 1}, headers={"X-Custom": "yes"})

    assert r.status_code == 200
    assert r.json() == {"params": {"model": "m-1"}, "query": {"alt": "sse", "x": ""}}
    (req,) = fake.requests
    assert (req.method, req.path) == ("POST", "/v1/models/m-1/run")
    assert req.headers["x-custom"] == req.headers["X-CUSTOM"] == "yes"
    assert "content-type" in req.headers
    assert req.json() == {"a": 1}


def test_regex_route_and_bearer(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.route("GET", re.compile(r"/v1beta/models/(?P<model>[^/:]+):(?P<verb>\w+)"), _echo)

    url = f"{fake.url}/v1beta/models/gemini:streamGenerateContent"
    r = client.get(url, headers={"Authorization": "Bearer k1"})

    assert r.json()["params"] == {"model": "gemini", "verb": "streamGenerateContent"}
    assert fake.requests[0].bearer == "k1"


def test_unknown_route_is_a_json_404(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.route("GET", "/known", _echo)

    r = client.post(f"{fake.url}/known")

    assert r.status_code == 404
    assert "no route for POST /known" in r.json()["error"]["message"]


def test_later_routes_override_earlier_ones(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.route("GET", "/x", lambda _: text_reply(200, "first"))
    fake.route("GET", "/x", lambda _: text_reply(200, "second"))

    assert client.get(f"{fake.url}/x").text == "second"


def test_enqueued_replies_are_fifo_and_beat_routes(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.route("GET", "/a", lambda _: text_reply(200, "route"))
    fake.route("GET", "/b", lambda _: text_reply(200, "route-b"))
    fake.enqueue(text_reply(503, "only for b"), path="/b")
    fake.enqueue(text_reply(500, "first"))
    fake.enqueue(text_reply(429, "second"))

    assert client.get(f"{fake.url}/a").text == "first"
    assert client.get(f"{fake.url}/b").text == "only for b"
    assert client.get(f"{fake.url}/a").status_code == 429
    assert client.get(f"{fake.url}/a").text == "route"
    assert len(fake.wait_for_requests(4)) == 4


def test_keep_alive_reuses_one_connection(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.route("GET", "/ping", lambda _: text_reply(200, "pong"))

    for _ in range(3):
        assert client.get(f"{fake.url}/ping").text == "pong"

    assert fake.connections_accepted == 1


def test_handler_crash_is_a_500_and_is_kept(fake: FakeUpstream, client: httpx2.Client) -> None:
    def boom(_: RecordedRequest) -> Reply:
        raise RuntimeError("bug in a fake")

    fake.route("GET", "/boom", boom)

    assert client.get(f"{fake.url}/boom").status_code == 500
    assert "bug in a fake" in str(fake.handler_errors[0])


def test_chunked_request_body_is_read(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.route("POST", "/up", lambda req: text_reply(200, req.text()))

    r = client.post(f"{fake.url}/up", content=iter([b"hello ", b"chunked ", b"world"]))

    assert r.text == "hello chunked world"


def test_wait_for_requests_times_out(fake: FakeUpstream) -> None:
    with pytest.raises(TimeoutError):
        fake.wait_for_requests(1, timeout=0.05)


# -------------------- streaming


def test_sse_reply_is_chunked_and_counted_complete(fake: FakeUpstream, client: httpx2.Client) -> None:
    events = [sse_comment("keep-alive"), sse_event({"n": 1}), sse_event("x\ny", event="multi")]
    fake.enqueue(sse_reply(events))

    with client.stream("GET", f"{fake.url}/s") as r:
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        body = r.read()

    assert body == b': keep-alive\n\ndata: {"n":1}\n\nevent: multi\ndata: x\ndata: y\n\n'
    assert fake.wait_for_completed_streams(1)
    assert fake.disconnects == 0


def test_pause_delays_the_next_part(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.enqueue(Reply(chunks=[b"first", Pause(0.3), b"second"]))

    with client.stream("GET", f"{fake.url}/p") as r:
        start = time.monotonic()
        parts = list(r.iter_raw())
        elapsed = time.monotonic() - start

    assert parts == [b"first", b"second"]
    assert 0.25 <= elapsed < 5


def test_ndjson_reply_with_delay(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.enqueue(ndjson_reply([{"status": "pulling"}, b'{"status":', b'"success"}\n'], delay_s=0.01))

    r = client.get(f"{fake.url}/api/pull")

    assert r.headers["content-type"] == "application/x-ndjson"
    assert r.text.splitlines() == ['{"status":"pulling"}', '{"status":"success"}']


def test_client_closing_during_stall_counts_as_disconnect(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.enqueue(Reply(chunks=[b"data: first\n\n", Stall()]))

    with client.stream("GET", f"{fake.url}/stall") as r:
        assert next(r.iter_raw()) == b"data: first\n\n"
    # leaving the block closes the half-read response, and so the connection

    assert fake.wait_for_disconnect(timeout=2.0)
    assert fake.completed_streams == 0


def test_client_closing_during_pause_counts_as_disconnect(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.enqueue(Reply(chunks=[b"one", Pause(30), b"never"]))

    start = time.monotonic()
    with client.stream("GET", f"{fake.url}/pause") as r:
        next(r.iter_raw())

    assert fake.wait_for_disconnect(timeout=10)
    assert time.monotonic() - start < 10  # the pause ended with the client, not after its 30 s


def test_client_timeout_while_waiting_for_headers_counts_as_disconnect(fake: FakeUpstream) -> None:
    fake.enqueue(Reply(delay_s=30, body=b"late"))

    with httpx2.Client(timeout=0.2) as impatient, pytest.raises(httpx2.ReadTimeout):
        impatient.get(f"{fake.url}/slow")

    assert fake.wait_for_disconnect(timeout=10)


def test_stall_is_bounded(fake: FakeUpstream, client: httpx2.Client) -> None:
    fake.enqueue(Reply(chunks=[b"x", Stall(max_seconds=0.1)]))

    with pytest.raises(httpx2.RemoteProtocolError):
        client.get(f"{fake.url}/s")

    # The client can see the close before the server thread has counted it.
    assert fake.wait_for(lambda: fake.aborted_streams == 1, timeout=10)


@pytest.mark.parametrize("reset", [False, True])
def test_abort_drops_the_connection_mid_body(fake: FakeUpstream, client: httpx2.Client, reset: bool) -> None:
    fake.enqueue(Reply(chunks=[b"partial", Abort(reset=reset), b"never sent"]))

    received: list[bytes] = []

    def read_all() -> None:
        with client.stream("GET", f"{fake.url}/abort") as r:
            received.extend(r.iter_raw())

    with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
        read_all()

    assert received == [b"partial"]
    assert fake.wait_for(lambda: fake.aborted_streams == 1, timeout=2.0)
    assert fake.disconnects == 0


def test_stop_is_prompt_with_a_stalled_stream() -> None:
    upstream = FakeUpstream().start()
    upstream.enqueue(Reply(chunks=[b"x", Stall()]))
    errors: list[BaseException] = []
    stalled = threading.Event()

    def consume() -> None:
        try:
            with httpx2.Client(timeout=30.0) as c, c.stream("GET", f"{upstream.url}/stalled") as r:
                chunks = r.iter_raw()
                next(chunks)
                stalled.set()  # the part before the stall has come; the stream is stalled now
                list(chunks)
        except httpx2.HTTPError as exc:
            errors.append(exc)

    reader = threading.Thread(target=consume)
    reader.start()
    assert stalled.wait(timeout=10)

    start = time.monotonic()
    upstream.stop(timeout=10)
    assert time.monotonic() - start < 5  # the stall was dropped, not waited for up to the join's 10 s

    reader.join(timeout=10)
    assert not reader.is_alive()
    assert errors  # the client saw the connection drop, not a complete response
    assert upstream.disconnects == 0  # the server hung up, not the client


# -------------------- helpers and the shared model


def test_split_sse_events_round_trips_bytes() -> None:
    raw = b"data: a\r\n\r\n: c\n\ndata: b\n\ntrailing"

    events = split_sse_events(raw)

    assert events == [b"data: a\r\n\r\n", b": c\n\n", b"data: b\n\n", b"trailing"]
    assert b"".join(events) == raw
    assert sse_event({"k": 1}, eol="\r\n") == b'data: {"k":1}\r\n\r\n'


def test_model_echoes_truncates_and_calls_tools() -> None:
    echo = plan(Conversation(system="Be brief.", turns=[Turn("user", "hello there")]))
    assert echo.text == "Echo: hello there"
    assert echo.text_pieces[:2] == ["Echo", ": he"]
    assert (echo.finish, echo.input_tokens, echo.output_tokens) == ("stop", 2 + 2 + 3 * 2, 5)

    cut = plan(Conversation(turns=[Turn("user", "hello there")], max_tokens=2))
    assert (cut.text, cut.finish) == ("Echo: he", "length")

    asked = Turn("user", "weather?")
    call = plan(Conversation(turns=[asked], tools=["lookup", "other"], want_reasoning=True))
    assert call.tool_call is not None
    assert call.tool_call.name == "lookup"
    assert call.tool_call.arguments == {"input": "weather?"}
    assert call.tool_call.id.startswith("call_")
    assert call.thinking == "Thinking about: weather?"
    assert (call.finish, call.reasoning_tokens, call.output_tokens) == ("tool_calls", 3, 5 + 3)

    answer = plan(
        Conversation(
            turns=[
                Turn("user", "weather?"),
                Turn("assistant", tool_calls=[call.tool_call]),
                Turn("tool", tool_result="sunny", tool_call_id=call.tool_call.id),
            ],
            tools=["lookup"],
        )
    )
    assert (answer.text, answer.tool_call, answer.finish) == ("The tool said: sunny", None, "stop")
    assert plan(Conversation(turns=[Turn("user", "weather?")], tools=["lookup"])).tool_call == call.tool_call
