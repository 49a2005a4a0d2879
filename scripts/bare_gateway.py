#!/usr/bin/env python3
"""The floor of the gateway's own stack, for the gateway benchmark: uvicorn with its httptools
parser and a bare ASGI app that forwards a chat completion to an OpenAI-compatible upstream with
aiohttp, and does nothing else (no key, no limit, no ledger, no bookkeeping, no validation).

What it costs over a direct call is what the stack costs (one more process, an HTTP server and an
HTTP client in Python); what the gateway costs over it is the sidecar's own work. Two ways:

- `streamed`: the upstream answer is streamed and its deltas joined, as the gateway does for
  every call (idle limits, cancellation and partial usage then work alike for both kinds);
- `whole`: the upstream is asked for the whole answer, which is passed on as it came.

    python scripts/bare_gateway.py <upstream api base> <streamed|whole>

It listens on a free port of 127.0.0.1, prints that port on a line of its own, and runs until killed.

Must not know: the sidecar.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import uvicorn

KEY = "sk-test-valid"
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BareGateway:
    def __init__(self, upstream: str, streamed: bool) -> None:
        self.url = upstream.rstrip("/") + "/chat/completions"
        self.streamed = streamed
        self.session: aiohttp.ClientSession | None = None
        self.headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = msgspec.json.decode(body)
        model = str(request["model"]).split(":", 1)[-1]
        if self.session is None:
            self.session = aiohttp.ClientSession()
        answer = await (self._streamed if self.streamed else self._whole)(self.session, model, request)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def _whole(self, session: aiohttp.ClientSession, model: str, request: dict[str, Any]) -> bytes:
        upstream = {"model": model, "messages": request["messages"]}
        async with session.post(self.url, data=msgspec.json.encode(upstream), headers=self.headers) as r:
            return await r.read()

    async def _streamed(self, session: aiohttp.ClientSession, model: str, request: dict[str, Any]) -> bytes:
        upstream = {
            "model": model,
            "messages": request["messages"],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        text: list[str] = []
        usage = None
        pending = b""
        async with session.post(self.url, data=msgspec.json.encode(upstream), headers=self.headers) as r:
            async for chunk in r.content.iter_any():
                pending += chunk
                *events, pending = pending.split(b"\n\n")
                for event in events:
                    if not event.startswith(b"data: ") or event == b"data: [DONE]":
                        continue
                    data = msgspec.json.decode(event[6:])
                    for choice in data.get("choices") or ():
                        if content := choice.get("delta", {}).get("content"):
                            text.append(content)
                    usage = data.get("usage") or usage
        message = {"role": "assistant", "content": "".join(text)}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return msgspec.json.encode(
            {"object": "chat.completion", "model": request["model"], "choices": [choice], "usage": usage}
        )


def main() -> None:
    upstream, way = sys.argv[1], sys.argv[2]
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted connections only for such a socket.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(
        BareGateway(upstream, streamed=way == "streamed"),
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
