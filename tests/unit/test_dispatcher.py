"""The dispatcher in-process: concurrent requests answered in any order, cancellation by either
spelling, errors per the contract, and notifications never answered."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import msgspec
import pytest

from sidecar.errors import SidecarError
from sidecar.rpc import envelope
from sidecar.rpc.dispatcher import Dispatcher
from sidecar.rpc.routes import RequestContext, Route, route
from sidecar.wire.base import Params


class Sleep(Params):
    seconds: float = 0.0
    fail: str | None = None


async def sleeper(params: Sleep, ctx: RequestContext) -> dict[str, Any]:
    await ctx.notify("tick", {"request_id": ctx.request_id})
    await anyio.sleep(params.seconds)
    if params.fail == "sidecar":
        raise SidecarError("rate_limited", "Slow down.", provider="openai", retry_after_s=2.0)
    if params.fail == "crash":
        raise RuntimeError("secret internals")
    return {"slept": params.seconds}


def line(rid: Any, method: str, params: Any = None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if rid is not None:
        msg["id"] = rid
    if params is not None:
        msg["params"] = params
    return json.dumps(msg).encode()


async def run_session(lines: list[bytes | tuple[float, bytes]]) -> list[dict[str, Any]]:
    out: list[bytes] = []
    dispatcher = Dispatcher({"sleep": route(Sleep, sleeper)}, out.append)
    send, receive = anyio.create_memory_object_stream[bytes](100)

    async def feed() -> None:
        async with send:
            for item in lines:
                if isinstance(item, tuple):
                    await anyio.sleep(item[0])
                    item = item[1]
                await send.send(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(feed)
        await dispatcher.serve(receive)
    return [msgspec.json.decode(b) for b in out]


def answers(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if "id" in m]


@pytest.mark.anyio
async def test_answers_come_in_completion_order() -> None:
    msgs = await run_session([line(1, "sleep", {"seconds": 0.2}), line(2, "sleep", {"seconds": 0.0})])
    assert [m["id"] for m in answers(msgs)] == [2, 1]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "params"), [("$/cancelRequest", {"id": "a"}), ("notifications/cancelled", {"requestId": "a"})]
)
async def test_cancel_answers_minus_32800(method: str, params: dict[str, Any]) -> None:
    msgs = await run_session([line("a", "sleep", {"seconds": 30}), (0.05, line(None, method, params))])
    (answer,) = answers(msgs)
    assert answer["error"]["code"] == -32800 and answer["error"]["data"]["kind"] == "cancelled"


@pytest.mark.anyio
async def test_sidecar_errors_carry_kind_and_fields_and_crashes_hide_internals() -> None:
    msgs = await run_session([line(1, "sleep", {"fail": "sidecar"}), line(2, "sleep", {"fail": "crash"})])
    by_id = {m["id"]: m for m in answers(msgs)}
    data = by_id[1]["error"]["data"]
    assert by_id[1]["error"]["code"] == 1003
    assert data == {
        "kind": "rate_limited",
        "message": "Slow down.",
        "provider": "openai",
        "retry_after_s": 2.0,
    }
    assert by_id[2]["error"]["code"] == -32603 and "secret internals" not in json.dumps(by_id[2])


@pytest.mark.anyio
async def test_duplicate_in_flight_id_and_notifications() -> None:
    msgs = await run_session(
        [line(1, "sleep", {"seconds": 0.1}), line(1, "sleep"), line(None, "sleep"), line(None, "unknown")]
    )
    errors = [m for m in answers(msgs) if "error" in m]
    assert len(errors) == 1 and "already in use" in errors[0]["error"]["message"]
    # Two answers with id 1 (the error, then the first request), nothing for the notifications.
    assert len(answers(msgs)) == 2


@pytest.mark.anyio
async def test_invalid_params_name_the_field() -> None:
    msgs = await run_session([line(1, "sleep", {"seconds": "soon"})])
    (answer,) = answers(msgs)
    assert answer["error"]["code"] == -32602 and answer["error"]["data"]["field"] == "$.seconds"


async def run_lines(lines: list[bytes], *, fallback: Any = None, pacer: Any = None) -> list[Any]:
    """Like run_session, but each written chunk is kept whole (a batch answer is one array)."""
    out: list[bytes] = []
    dispatcher = Dispatcher({"sleep": route(Sleep, sleeper)}, out.append, fallback=fallback, pacer=pacer)
    send, receive = anyio.create_memory_object_stream[bytes](100)
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.serve, receive)
        async with send:
            for item in lines:
                await send.send(item)
    return [msgspec.json.decode(b) for b in out]


def batch(*items: bytes) -> bytes:
    return b"[" + b",".join(items) + b"]"


@pytest.mark.anyio
async def test_a_batch_gets_one_array_of_its_requests_answers() -> None:
    msgs = await run_lines(
        [
            batch(
                line(1, "sleep", {"seconds": 0.1}),
                line(None, "sleep"),  # a notification: no answer
                line(2, "nope"),
                b"7",
                line(3, "$/cancelRequest", {"id": 1}),
                line(4, "sleep", {"secs": 1}),
            )
        ]
    )
    (answers_,) = [m for m in msgs if isinstance(m, list)]  # one array, written once
    assert all(m["method"] == "tick" for m in msgs if not isinstance(m, list))
    by_id = {json.dumps(a["id"]): a for a in answers_}
    assert sorted(by_id) == ["1", "2", "3", "4", "null"]
    assert by_id["1"]["error"]["code"] == -32800  # cancelled by request 3 of the same batch
    assert by_id["2"]["error"]["code"] == -32601 and by_id["3"]["result"] is None
    assert by_id["null"]["error"]["code"] == -32600
    assert by_id["4"]["error"]["data"]["details"]["did_you_mean"] == "seconds"


@pytest.mark.anyio
async def test_notification_only_batches_get_nothing_and_an_empty_one_one_error() -> None:
    msgs = await run_lines([batch(line(None, "sleep"), line(None, "x")), b"[]"])
    assert msgs == [
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32600, "message": "Invalid request: an empty batch"},
        }
    ]


@pytest.mark.anyio
async def test_requests_for_the_fallback_are_refused_inside_a_batch() -> None:
    class Mcp:
        def __call__(self, msg: Any) -> bool:
            raise AssertionError("a batch element must not reach the MCP face")

        def claims(self, method: str) -> bool:
            return method == "tools/list"

    (answers_,) = await run_lines([batch(line("t", "tools/list"))], fallback=Mcp())
    assert answers_[0]["error"]["code"] == -32600 and "batch" in answers_[0]["error"]["message"]


@pytest.mark.anyio
async def test_an_exception_while_dispatching_one_message_costs_only_that_message() -> None:
    def broken_fallback(msg: Any) -> bool:
        raise RuntimeError("bug in a face")

    msgs = await run_lines(
        [line("x", "unknown/method"), line(None, "unknown/note"), line("ok", "sleep")],
        fallback=broken_fallback,
    )
    by_id = {m["id"]: m for m in msgs if "id" in m}
    assert by_id["x"]["error"]["code"] == -32603 and "bug in a face" not in json.dumps(by_id["x"])
    assert by_id["ok"]["result"] == {"slept": 0.0}


@pytest.mark.anyio
async def test_a_depth_bomb_is_answered_once_with_its_id_and_serving_goes_on() -> None:
    bomb = b"[" * 2000 + b"]" * 2000
    raw = b'{"jsonrpc":"2.0","id":1,"method":"sleep","params":{"seconds":0,"x":' + bomb + b"}}"
    first, second = answers(await run_lines([raw, line(2, "sleep")]))
    assert (first["id"], first["error"]["code"]) == (1, -32600)
    assert second["id"] == 2 and second["result"] == {"slept": 0.0}


@pytest.mark.anyio
async def test_params_too_deep_for_their_decoder_are_invalid_params() -> None:
    class TooDeep:
        def decode(self, data: Any) -> Any:
            raise RecursionError

    routes = {"deep": Route(TooDeep(), sleeper, Sleep)}  # type: ignore[arg-type]
    out: list[bytes] = []
    dispatcher = Dispatcher(routes, out.append)
    send, receive = anyio.create_memory_object_stream[bytes](10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.serve, receive)
        async with send:
            await send.send(line(1, "deep", {}))
    (answer,) = [msgspec.json.decode(b) for b in out]
    assert answer["error"]["code"] == -32602 and "nested too deeply" in answer["error"]["message"]


@pytest.mark.anyio
async def test_notifying_requests_wait_while_the_outgoing_buffer_is_congested() -> None:
    class Pacer:
        def __init__(self) -> None:
            self.congested = True
            self.waits = 0
            self.room = anyio.Event()

        async def wait_for_room(self) -> None:
            self.waits += 1
            await self.room.wait()

    pacer = Pacer()
    out: list[bytes] = []
    dispatcher = Dispatcher({"sleep": route(Sleep, sleeper)}, out.append, pacer=pacer)
    send, receive = anyio.create_memory_object_stream[bytes](10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.serve, receive)
        await send.send(line(1, "sleep"))
        for _ in range(500):  # until the request is held (bounded), not for a time
            if pacer.waits and out:
                break
            await anyio.sleep(0.01)
        assert pacer.waits == 1 and len(out) == 1  # the tick went out; the request waits for room
        pacer.congested = False
        pacer.room.set()
        await send.aclose()
    assert [msgspec.json.decode(b).get("id") for b in out] == [None, 1]


class Empty(Params):
    pass


async def instant(params: Empty, ctx: RequestContext) -> dict[str, Any]:
    return {"id": ctx.request_id}


async def instant_failure(params: Empty, ctx: RequestContext) -> dict[str, Any]:
    raise SidecarError("invalid_request", "No.")


async def first_use_needs_a_task(params: Empty, ctx: RequestContext) -> dict[str, Any]:
    # What the app's first call of a method may do: start a background task and wait for it.
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.sleep, 0)
    return {"ok": True}


async def not_so_instant(params: Sleep, ctx: RequestContext) -> dict[str, Any]:
    await anyio.sleep(params.seconds)  # declared inline, yet it suspends
    return {"slept": params.seconds}


async def run_batches(batches: list[list[bytes]], routes: dict[str, Route]) -> list[bytes]:
    """Hand each list of lines over at once, as one read of the pipe is: from a loop callback,
    outside any task, as `StdinReader.pump` does."""
    out: list[bytes] = []
    dispatcher = Dispatcher(routes, out.append)

    async def pump(handle: Any) -> None:
        loop = asyncio.get_running_loop()
        for lines in batches:
            loop.call_soon(handle, lines)
            await anyio.sleep(0.05)

    with anyio.fail_after(10):
        await dispatcher.serve_batches(pump)
    return out


WARM_UP = [line("w1", "instant"), line("w2", "refuse"), line("w3", "slow")]  # first calls run in tasks


def after_warm_up(out: list[bytes]) -> list[dict[str, Any]]:
    msgs = [msgspec.json.decode(b) for b in out]
    return [m for m in msgs if m.get("id") not in ("w1", "w2", "w3")]


INLINE_ROUTES = {
    "sleep": route(Sleep, sleeper),
    "instant": route(Empty, instant, inline=True),
    "refuse": route(Empty, instant_failure, inline=True),
    "slow": route(Sleep, not_so_instant, inline=True),
    "setup": route(Empty, first_use_needs_a_task, inline=True),
}


@pytest.mark.anyio
async def test_inline_methods_are_answered_on_the_read_before_any_task_runs() -> None:
    out = await run_batches(
        [WARM_UP, [line(1, "sleep"), line(2, "instant"), line(3, "refuse")]], INLINE_ROUTES
    )
    msgs = after_warm_up(out)
    # Both inline answers were written while the read was handled; the spawned request's first
    # notification comes after them.
    assert [m.get("id", m.get("method")) for m in msgs] == [2, 3, "tick", 1]
    assert msgs[0]["result"] == {"id": 2}
    assert msgs[1]["error"]["data"]["kind"] == "invalid_request"


@pytest.mark.anyio
async def test_invalid_params_and_duplicate_ids_are_answered_on_the_read() -> None:
    out = await run_batches(
        [[line(1, "sleep", {"seconds": 0.2}), line(1, "instant"), line(2, "sleep", {"sekonds": 1})]],
        INLINE_ROUTES,
    )
    msgs = [msgspec.json.decode(b) for b in out]
    assert [m.get("id", m.get("method")) for m in msgs] == [1, 2, "tick", 1]
    assert "already in use" in msgs[0]["error"]["message"]
    assert msgs[1]["error"]["code"] == -32602 and msgs[1]["error"]["data"]["field"] == "$.sekonds"
    assert msgs[3]["result"] == {"slept": 0.2}


@pytest.mark.anyio
async def test_an_inline_handler_that_suspends_still_finishes_and_can_be_cancelled() -> None:
    out = await run_batches(
        [
            WARM_UP,
            [line(1, "slow", {"seconds": 0.01}), line(2, "slow", {"seconds": 30})],
            [line(None, "$/cancelRequest", {"id": 2})],
        ],
        INLINE_ROUTES,
    )
    by_id = {m["id"]: m for m in after_warm_up(out)}
    assert by_id[1]["result"] == {"slept": 0.01}
    assert by_id[2]["error"]["code"] == -32800


@pytest.mark.anyio
async def test_an_inline_methods_first_call_runs_in_a_task() -> None:
    out = await run_batches([[line(1, "setup")]], INLINE_ROUTES)
    assert [msgspec.json.decode(b) for b in out] == [{"jsonrpc": "2.0", "id": 1, "result": {"ok": True}}]


@pytest.mark.anyio
async def test_a_params_type_given_as_a_function_is_looked_up_when_its_method_is_first_called() -> None:
    looked_up: list[str] = []

    def sleep_type() -> type[Sleep]:
        looked_up.append("sleep")
        return Sleep

    routes = {"sleep": route(sleep_type, sleeper)}
    assert looked_up == []  # building the route loads nothing
    out = await run_batches([[line(1, "sleep", {"seconds": 0}), line(2, "sleep", {"sekonds": 1})]], routes)
    msgs = [msgspec.json.decode(b) for b in out]
    assert looked_up == ["sleep"]  # once, then kept
    answers = {m["id"]: m.get("result", m.get("error", {}).get("code")) for m in msgs if "id" in m}
    assert answers == {1: {"slept": 0}, 2: -32602}


class Answer(msgspec.Struct):
    value: str


class Kept:
    """A handler's result while its answer stays the same: `current` until `change` makes another."""

    def __init__(self) -> None:
        self.current = Answer("first")
        self.returned = 0

    def change(self, value: str) -> None:
        self.current = Answer(value)

    async def handler(self, params: Empty, ctx: RequestContext) -> Answer:
        self.returned += 1
        return self.current


@pytest.mark.anyio
async def test_a_same_result_answer_carries_each_requests_own_id() -> None:
    kept = Kept()
    ids: list[Any] = ["w", 1, -7, 2**70, -(2**64), "", 'a"b\\c\n', "é✓\U0001f600", "0"]
    routes = {"same": route(Empty, kept.handler, inline=True, same_result=True)}
    out = await run_batches([[line("w", "same")], [line(rid, "same") for rid in ids[1:]]], routes)
    assert kept.returned == len(ids)  # the handler is still called for every request
    assert out == [envelope.encode_result(rid, Answer("first")) for rid in ids]


@pytest.mark.anyio
async def test_a_same_result_route_encodes_a_new_result_and_other_routes_every_result() -> None:
    same, other = Kept(), Kept()
    routes = {
        "same": route(Empty, same.handler, inline=True, same_result=True),
        "other": route(Empty, other.handler, inline=True),
    }
    out: list[bytes] = []
    dispatcher = Dispatcher(routes, out.append)

    async def pump(handle: Any) -> None:
        handle([line(0, "same"), line("o", "other")])
        await anyio.sleep(0.05)  # the first calls run in tasks
        handle([line(1, "same"), line(2, "other")])
        same.change("second")  # a new object: a new answer
        other.current.value = "changed in place"  # allowed only of a route that is not same_result
        handle([line(3, "same"), line(4, "other")])

    with anyio.fail_after(10):
        await dispatcher.serve_batches(pump)
    results = {msgspec.json.decode(b)["id"]: msgspec.json.decode(b)["result"] for b in out}
    assert results == {
        0: {"value": "first"},
        "o": {"value": "first"},
        1: {"value": "first"},
        2: {"value": "first"},
        3: {"value": "second"},
        4: {"value": "changed in place"},
    }


class Counted(Params):
    seen: list[str] = msgspec.field(default_factory=list)


async def appends(params: Counted, ctx: RequestContext) -> dict[str, Any]:
    params.seen.append(str(ctx.request_id))  # a handler may change its params: they are its own
    return {"seen": params.seen}


@pytest.mark.anyio
async def test_absent_params_are_decoded_afresh_unless_they_hold_nothing() -> None:
    routes = {
        "appends": route(Counted, appends, inline=True),
        "instant": route(Empty, instant, inline=True),
    }
    lines = [line(rid, "appends") for rid in (1, 2, 3)]
    lines += [line(4, "instant"), line(5, "instant", {}), line(6, "instant", {"x": 1}), line(7, "instant")]
    out = await run_batches([lines[:1], lines[1:]], routes)
    by_id = {m["id"]: m for m in map(msgspec.json.decode, out)}
    assert [by_id[rid]["result"] for rid in (1, 2, 3)] == [{"seen": ["1"]}, {"seen": ["2"]}, {"seen": ["3"]}]
    assert (
        by_id[4]["result"] == {"id": 4}
        and by_id[5]["result"] == {"id": 5}
        and by_id[7]["result"] == {"id": 7}
    )
    assert by_id[6]["error"]["code"] == -32602 and by_id[6]["error"]["data"]["field"] == "$.x"


@pytest.mark.anyio
async def test_blank_lines_are_skipped_and_what_is_not_json_is_answered_in_order() -> None:
    routes = {"instant": route(Empty, instant, inline=True)}
    reads = [[line(0, "instant")], [b"", b" \t\r", line(1, "instant"), b"nope", b"\r", line(2, "instant")]]
    msgs = [msgspec.json.decode(b) for b in await run_batches(reads, routes)]
    assert [(m["id"], m.get("error", {}).get("code")) for m in msgs] == [
        (0, None),
        (1, None),
        (None, -32700),
        (2, None),
    ]


@pytest.mark.anyio
async def test_a_handler_that_names_its_settled_successor_is_left_out_after_its_first_call() -> None:
    detours: list[Any] = []

    async def detour(params: Empty, ctx: RequestContext) -> dict[str, Any]:
        detours.append(ctx.request_id)
        detour.settled = instant  # type: ignore[attr-defined]  # what Services._deferred does
        return await instant(params, ctx)

    routes = {"instant": route(Empty, detour, inline=True), "sleep": route(Sleep, sleeper)}
    out = await run_batches([[line(1, "instant")], [line(2, "instant"), line(3, "instant")]], routes)
    assert [msgspec.json.decode(b)["result"] for b in out] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert detours == [1]


@pytest.mark.anyio
async def test_a_reads_answers_given_at_once_may_go_to_answer_and_never_once_the_read_is_handled() -> None:
    """`handle_batch(lines, answer)`: `answer` (the stdio writer's gathered list, which feeds the
    same stream as `write`) takes answers only while the read is handled; a request that runs in a
    task, or that suspends after all, answers through `write` when it finishes."""
    out: list[bytes] = []
    gathering = False
    gathered: list[bytes] = []

    def answer(data: bytes) -> None:
        assert gathering, "answered through a gathered list after the read was handled"
        gathered.append(data)
        out.append(data)

    dispatcher = Dispatcher(INLINE_ROUTES, out.append)

    async def pump(handle: Any) -> None:
        nonlocal gathering
        handle(WARM_UP)  # first calls run in tasks
        await anyio.sleep(0.05)
        out.clear()
        gathering = True
        handle(
            [
                line(1, "sleep"),
                line(2, "instant"),
                b"[]",
                line(3, "nope"),
                line(4, "slow"),
                line(5, "refuse"),
            ],
            answer,
        )
        gathering = False

    with anyio.fail_after(10):
        await dispatcher.serve_batches(pump)
    msgs = [msgspec.json.decode(b) for b in out]
    # In the order they were given: the read's own answers first, then the tasks'.
    assert [m.get("id", m.get("method")) for m in msgs][:4] == [2, None, 3, 5]
    assert sorted(str(m.get("id", m.get("method"))) for m in msgs[4:]) == ["1", "4", "tick"]
    assert [msgspec.json.decode(b)["id"] for b in gathered] == [2, 3, 5]


async def slow_to_stop(params: Sleep, ctx: RequestContext) -> dict[str, Any]:
    try:
        await anyio.sleep(30)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.3)  # recording what happened takes longer than the settle time
    return {}


@pytest.mark.anyio
async def test_a_request_still_stopping_when_the_settle_time_ends_is_answered_cancelled() -> None:
    out: list[bytes] = []
    dispatcher = Dispatcher({"slow": route(Sleep, slow_to_stop)}, out.append)
    send, receive = anyio.create_memory_object_stream[bytes](1)
    with anyio.fail_after(10):
        async with send:
            await send.send(line(7, "slow"))
        await dispatcher.serve(receive, grace_s=0.05, settle_s=0.05)
    (answer,) = [msgspec.json.decode(b) for b in out]
    assert answer["id"] == 7 and answer["error"]["code"] == -32800
    assert answer["error"]["data"]["kind"] == "cancelled"
