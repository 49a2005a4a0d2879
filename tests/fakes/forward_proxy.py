"""A forward HTTP proxy on 127.0.0.1: what a company's proxy is to the sidecar.

It answers ``CONNECT host:port`` (how every https request crosses a proxy) for the hosts it is
told about, checks ``Proxy-Authorization`` when it has credentials (a 407 with
``Proxy-Authenticate`` otherwise, as Squid answers), and records every tunnel asked for
(``tunnels``). A tunnel ends in TLS with a certificate for its host (``tests/tls.py``; the client
trusts it through ``SSL_CERT_FILE``), and the plaintext goes on to a fake upstream on 127.0.0.1:
from the client's side, a tunnel to the provider itself. The host names end in ``.test``
(RFC 2606) and only the proxy resolves them, as a client behind a proxy leaves names to it.
A ``CONNECT`` to a host it does not know gets 502; any other request gets 405.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

__all__ = ["ForwardProxy", "Tunnel"]


@dataclass(frozen=True)
class Tunnel:
    target: str  # host:port, as the client asked for it
    authorization: str | None  # the Proxy-Authorization header it sent
    opened: bool


class ForwardProxy:
    """``hosts`` maps ``host:port`` to the port of a fake upstream on 127.0.0.1; ``cert`` and
    ``key`` are the certificate presented at a tunnel's end; ``credentials`` (user, password),
    if given, must come with every ``CONNECT``."""

    def __init__(
        self, hosts: Mapping[str, int], cert: str, key: str, credentials: tuple[str, str] | None = None
    ) -> None:
        self.hosts = dict(hosts)
        self.credentials = credentials
        self.tunnels: list[Tunnel] = []
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert, key)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="forward-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the forward proxy did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None:
            loop.call_soon_threadsafe(server.close)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def _authorized(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        user, password = self.credentials
        return header == "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rpartition(" ")[0]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        authorization = headers.get("proxy-authorization")
        if method != "CONNECT":
            await _answer(writer, b"405 Method Not Allowed")
            return
        if not self._authorized(authorization):
            self.tunnels.append(Tunnel(target, authorization, opened=False))
            await _answer(
                writer, b"407 Proxy Authentication Required", b'Proxy-Authenticate: Basic realm="corp"\r\n'
            )
            return
        port = self.hosts.get(target)
        self.tunnels.append(Tunnel(target, authorization, opened=port is not None))
        if port is None:
            await _answer(writer, b"502 Bad Gateway")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await writer.start_tls(self._tls)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except (OSError, ssl.SSLError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _answer(writer: asyncio.StreamWriter, status: bytes, extra: bytes = b"") -> None:
    writer.write(b"HTTP/1.1 " + status + b"\r\n" + extra + b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    with contextlib.suppress(OSError):
        await writer.drain()
    writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()
