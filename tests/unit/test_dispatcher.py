"""The dispatcher in-process: concurrent requests answered in any order, cancellation by either
spelling, errors per the contract, and notifications never answered."""

from __future__ import annotations

import json
from typing import Any

import anyio
import msgspec
import pytest

from sidecar.errors import SidecarError
from sidecar.rpc.dispatcher import Dispatcher, RequestContext, route
from sidecar.wire.base import Wire


class Sleep(Wire):
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


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
