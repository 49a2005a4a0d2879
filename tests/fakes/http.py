"""A real HTTP/1.1 server on 127.0.0.1 for faking LLM provider upstreams in tests.

What it is for: integration tests point the sidecar's real HTTP client at ``FakeUpstream.url`` and
script what the "provider" does, byte for byte, including the failures that mocks cannot show:
slow streams, stalls, mid-body aborts, and whether the client really closed the connection when a
request was cancelled. Provider fakes (``openai_compat.py`` and friends) subclass ``FakeUpstream``
and register routes in ``__init__``.

Model:

* ``FakeUpstream`` binds ``127.0.0.1:0`` and serves each connection on a daemon thread
  (``ThreadingHTTPServer``), with HTTP/1.1 keep-alive. Use it as a context manager or call
  ``start()``/``stop()``; ``stop()`` returns promptly even while streams are paused or stalled.
* Every request is recorded (``RecordedRequest``) before it is answered: ``.requests``,
  ``wait_for_requests(n)``.
* A request is answered by the first queued one-shot reply whose path filter matches
  (``enqueue``), else by the most recently registered matching route (``route``), else by
  ``not_found()`` (a 404 JSON body; subclasses may override it).
* A ``Reply`` carries either a whole ``body`` (sent with ``Content-Length``) or ``chunks``, a
  sequence of parts sent with ``Transfer-Encoding: chunked``: ``bytes`` (one HTTP chunk each),
  ``Pause(seconds)``, ``Stall()`` (send nothing until the client goes away or the server stops,
  at most 60 s, then drop the connection) and ``Abort()`` (drop the connection mid-body, no
  terminating chunk; ``Abort(reset=True)`` sends a TCP RST instead of a FIN).
* The server notices a client that goes away while a reply is being sent (a failed write, or
  end-of-file on the socket while waiting) and counts it in ``.disconnects``
  (``wait_for_disconnect()``). That is how a test proves that cancelling a sidecar request
  closed the upstream connection. Finished streams are counted in ``.completed_streams`` and
  scripted aborts in ``.aborted_streams``.

Helpers build common replies: ``json_reply``, ``text_reply``, ``sse_reply`` (+ ``sse_event``,
``sse_comment``, ``split_sse_events``) and ``ndjson_reply``.

A provider fake in a few lines (the answer comes from the shared model in ``behaviour.py``)::

    class FakeOllama(FakeUpstream):
        def __init__(self) -> None:
            super().__init__()
            self.route("POST", "/api/chat", self._chat)

        def _chat(self, req: RecordedRequest) -> Reply:
            answer = plan(Conversation(turns=[Turn("user", req.json()["messages"][-1]["content"])]))
            lines = [{"message": {"role": "assistant", "content": t}} for t in answer.text_pieces]
            return ndjson_reply([*lines, {"done": True, "done_reason": answer.finish}])

    with FakeOllama() as fake:
        fake.enqueue(ndjson_reply([b'{"message":', Stall()]))   # the next request stalls mid-line
        ...                                                      # drive the sidecar at fake.url
        assert fake.wait_for_disconnect()                        # it hung up when cancelled
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import select
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "Abort",
    "FakeUpstream",
    "Handler",
    "Headers",
    "Part",
    "PathSpec",
    "Pause",
    "RecordedRequest",
    "Reply",
    "Stall",
    "json_reply",
    "ndjson_reply",
    "split_sse_events",
    "sse_comment",
    "sse_event",
    "sse_reply",
    "text_reply",
]

POLL_S = 0.02
"""How often waits check for a vanished client or a stopping server."""
STALL_LIMIT_S = 60.0
"""Upper bound for ``Stall``: nothing in a test should hang longer than this."""
IDLE_TIMEOUT_S = 30.0
"""A keep-alive connection idle for this long is closed by the server."""


# -------------------- replies


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds`` before sending the next part (ends early if the client goes away)."""

    seconds: float


@dataclass(frozen=True)
class Stall:
    """Send nothing more; hold the connection until the client leaves or the server stops.

    After ``max_seconds`` (capped at 60 s) the server drops the connection without the
    terminating chunk. Parts after a ``Stall`` are never sent.
    """

    max_seconds: float = STALL_LIMIT_S


@dataclass(frozen=True)
class Abort:
    """Close the connection mid-body, without the terminating chunk.

    ``reset=False`` closes with a FIN (the client sees an incomplete chunked body);
    ``reset=True`` sets ``SO_LINGER`` to 0 so the close sends a TCP RST ("connection reset").
    """

    reset: bool = False


Part = bytes | Pause | Stall | Abort
"""One element of a streamed reply."""


@dataclass
class Reply:
    """A scripted HTTP response.

    ``body`` is sent with ``Content-Length``. If ``chunks`` is not None the reply is streamed
    with ``Transfer-Encoding: chunked`` instead and ``body`` is ignored; ``chunks`` may be a
    generator (then the reply can be served once). ``delay_s`` waits before the status line is
    sent (the wait ends early, and counts as a disconnect, if the client goes away).
    Header names are sent as given; ``Date`` and ``Server`` are added unless present.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: Iterable[Part] | None = None
    delay_s: float = 0.0

    @property
    def streaming(self) -> bool:
        return self.chunks is not None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def json_reply(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Reply:
    """A compact JSON body with ``content-type: application/json``."""
    all_headers = {"content-type": "application/json", **(headers or {})}
    return Reply(status=status, headers=all_headers, body=_dumps(obj).encode())


def paced_whole(reply: Reply, stream: Callable[[], Iterable[object]], delay_s: float) -> Reply:
    """``reply``, a whole answer, held back as long as its stream (the parts of ``stream()``,
    ``delay_s`` apart) would take: a non-streamed call waits for the whole generation."""
    if delay_s > 0:
        reply.delay_s = delay_s * max(0, sum(1 for _ in stream()) - 1)
    return reply


def text_reply(
    status: int,
    text: str,
    headers: Mapping[str, str] | None = None,
    *,
    content_type: str = "text/plain; charset=utf-8",
) -> Reply:
    """A plain text body (an HTML error page from a proxy, say)."""
    all_headers = {"content-type": content_type, **(headers or {})}
    return Reply(status=status, headers=all_headers, body=text.encode())


def sse_event(data: str | bytes | Any, *, event: str | None = None, eol: str = "\n") -> bytes:
    """Frame one SSE event: optional ``event:`` line, one ``data:`` line, blank line.

    ``data`` that is not ``str``/``bytes`` is JSON-encoded compactly. Use ``eol="\\r\\n"`` for
    Gemini. Multi-line data is split into several ``data:`` lines as the SSE spec requires.
    """
    if isinstance(data, bytes):
        text = data.decode()
    elif isinstance(data, str):
        text = data
    else:
        text = _dumps(data)
    lines = [f"event: {event}"] if event is not None else []
    lines += [f"data: {line}" for line in text.split("\n")]
    return (eol.join(lines) + eol + eol).encode()


def sse_comment(text: str, *, eol: str = "\n") -> bytes:
    """An SSE comment block (``: text`` + blank line), e.g. OpenRouter's keep-alives."""
    return f": {text}{eol}{eol}".encode()


_SSE_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def split_sse_events(raw: bytes) -> list[bytes]:
    """Split a recorded SSE body into events, each keeping its own blank-line terminator.

    Joining the result gives back ``raw`` exactly (a trailing fragment without a blank line is
    kept as the last element).
    """
    events: list[bytes] = []
    start = 0
    for match in _SSE_BOUNDARY.finditer(raw):
        events.append(raw[start : match.end()])
        start = match.end()
    if start < len(raw):
        events.append(raw[start:])
    return events


def _paced(parts: Iterable[Part], delay_s: float) -> Iterator[Part]:
    """Insert ``Pause(delay_s)`` between data parts (not before the first one)."""
    first = True
    for part in parts:
        if isinstance(part, bytes) and delay_s > 0 and not first:
            yield Pause(delay_s)
        if isinstance(part, bytes):
            first = False
        yield part


def sse_reply(
    events: Iterable[bytes | Pause | Stall | Abort],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = "text/event-stream; charset=utf-8",
    delay_s: float = 0.0,
) -> Reply:
    """Stream already-framed SSE events (see ``sse_event``), one HTTP chunk per event.

    Control parts (``Pause``/``Stall``/``Abort``) may be mixed in; ``delay_s`` adds a pause
    between consecutive events.
    """
    all_headers = {"content-type": content_type, **(headers or {})}
    return Reply(status=status, headers=all_headers, chunks=list(_paced(events, delay_s)))


def ndjson_reply(
    items: Iterable[Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/x-ndjson",
    delay_s: float = 0.0,
) -> Reply:
    """Stream newline-delimited JSON, one HTTP chunk per line.

    Each item is a JSON-able object (encoded + ``\\n``), raw ``bytes`` (sent verbatim, so a
    test can split a line across chunks) or a control part.
    """
    parts: list[Part] = []
    for item in items:
        if isinstance(item, bytes | Pause | Stall | Abort):
            parts.append(item)
        else:
            parts.append((_dumps(item) + "\n").encode())
    all_headers = {"content-type": content_type, **(headers or {})}
    return Reply(status=status, headers=all_headers, chunks=list(_paced(parts, delay_s)))


# -------------------- requests


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive request headers; repeated headers are joined with ``, ``."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        merged: dict[str, tuple[str, str]] = {}
        for name, value in pairs:
            key = name.lower()
            if key in merged:
                merged[key] = (merged[key][0], f"{merged[key][1]}, {value}")
            else:
                merged[key] = (name, value)
        self._items = merged

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it. ``path`` excludes the query string."""

    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode()

    @property
    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
        value = self.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None


Handler = Callable[[RecordedRequest], Reply]
PathSpec = str | re.Pattern[str]


def _compile_path(path: PathSpec) -> re.Pattern[str]:
    """``{name}`` placeholders match one path segment (``[^/]+``); a compiled regex is used as is."""
    if isinstance(path, re.Pattern):
        return path
    pieces = re.split(r"\{(\w+)\}", path)
    pattern = "".join(
        re.escape(piece) if i % 2 == 0 else f"(?P<{piece}>[^/]+)" for i, piece in enumerate(pieces)
    )
    return re.compile(pattern)


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


@dataclass(frozen=True)
class _Queued:
    pattern: re.Pattern[str] | None
    reply: Reply


# -------------------- server


class _End(Enum):
    """How sending a reply ended."""

    COMPLETED = "completed"
    CLIENT_GONE = "client_gone"
    ABORTED = "aborted"
    STOPPING = "stopping"


class FakeUpstream:
    """A scriptable HTTP/1.1 server on 127.0.0.1 (see the module docstring)."""

    server_header: ClassVar[str] = "fake-upstream"
    """Value of the ``Server`` response header (subclasses may mimic the real provider)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()  # guards everything below; an RLock underneath
        self._routes: list[_Route] = []
        self._queue: list[_Queued] = []
        self._requests: list[RecordedRequest] = []
        self._handler_errors: list[BaseException] = []
        self._disconnects = 0
        self._completed = 0
        self._aborted = 0
        self._accepted = 0
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("fake upstream already started")
        self._stopping.clear()
        self._server = _Server(self)
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_S},
            name=f"{type(self).__name__}-serve",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, drop open connections (stalled streams too) and join handler threads."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._cond:
            connections = list(self._connections)
            threads = list(self._threads)
        for conn in connections:
            _shutdown_quietly(conn)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("fake upstream not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    # -- scripting

    def route(self, method: str, path: PathSpec, handler: Handler) -> None:
        """Answer ``method path`` with ``handler``. Later registrations win over earlier ones.

        ``path`` is a template (``/v1/models/{model}``; values land in ``req.path_params``) or a
        compiled regex (named groups land in ``req.path_params``); it must match the whole path.
        """
        with self._cond:
            self._routes.append(_Route(method.upper(), _compile_path(path), handler))

    def enqueue(self, reply: Reply, path: PathSpec | None = None) -> None:
        """Serve ``reply`` once, before any route, to the next request (whose path matches ``path``)."""
        with self._cond:
            self._queue.append(_Queued(None if path is None else _compile_path(path), reply))

    def not_found(self, req: RecordedRequest) -> Reply:
        """The reply for a request no route matches (override for a provider's 404 shape)."""
        message = f"fake upstream: no route for {req.method} {req.path}"
        return json_reply(404, {"error": {"message": message, "type": "not_found"}})

    def clear(self) -> None:
        """Forget recorded requests, queued replies, errors and counters (routes stay)."""
        with self._cond:
            self._queue.clear()
            self._requests.clear()
            self._handler_errors.clear()
            self._disconnects = self._completed = self._aborted = self._accepted = 0

    # -- observation

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def handler_errors(self) -> list[BaseException]:
        """Exceptions raised by route handlers (each was answered with a 500)."""
        with self._cond:
            return list(self._handler_errors)

    @property
    def disconnects(self) -> int:
        with self._cond:
            return self._disconnects

    @property
    def completed_streams(self) -> int:
        with self._cond:
            return self._completed

    @property
    def aborted_streams(self) -> int:
        with self._cond:
            return self._aborted

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (shows whether a client reuses keep-alive connections)."""
        with self._cond:
            return self._accepted

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` holds (checked whenever the fake's state changes)."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Return the recorded requests once there are at least ``n``; raise ``TimeoutError`` if not."""
        if not self.wait_for(lambda: len(self._requests) >= n, timeout):
            raise TimeoutError(f"expected {n} request(s), got {len(self.requests)} after {timeout}s")
        return self.requests

    def wait_for_disconnect(self, timeout: float = 5.0, count: int = 1) -> bool:
        """True once at least ``count`` client disconnects have been seen."""
        return self.wait_for(lambda: self._disconnects >= count, timeout)

    def wait_for_completed_streams(self, count: int = 1, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda: self._completed >= count, timeout)

    # -- called from handler threads

    def _answer(self, req: RecordedRequest) -> Reply:
        """Record ``req`` and pick its reply: queued one-shot, then route, then ``not_found``."""
        with self._cond:
            queued = next((q for q in self._queue if _matches(q.pattern, req.path)), None)
            if queued is not None:
                self._queue.remove(queued)
            found = None if queued is not None else self._find_route(req)
            if found is not None:
                req = replace(req, path_params=found[1])
            self._record(req)
        if queued is not None:
            return queued.reply
        if found is None:
            return self.not_found(req)
        try:
            return found[0](req)
        except Exception as exc:  # a bug in a fake: answer 500 and keep it for the test to see
            traceback.print_exc(file=sys.stderr)
            with self._cond:
                self._handler_errors.append(exc)
            return json_reply(500, {"error": {"message": f"fake handler crashed: {exc!r}"}})

    def _find_route(self, req: RecordedRequest) -> tuple[Handler, dict[str, str]] | None:
        for route in reversed(self._routes):
            match = route.pattern.fullmatch(req.path)
            if match is not None and route.method == req.method:
                return route.handler, match.groupdict()
        return None

    def _record(self, req: RecordedRequest) -> None:
        self._requests.append(req)
        self._cond.notify_all()

    def _count(self, end: _End) -> None:
        with self._cond:
            if end is _End.CLIENT_GONE:
                self._disconnects += 1
            elif end is _End.ABORTED:
                self._aborted += 1
            self._cond.notify_all()

    def _count_completed_stream(self) -> None:
        with self._cond:
            self._completed += 1
            self._cond.notify_all()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._cond:
            if add:
                self._accepted += 1
                self._connections.add(conn)
                self._threads.add(threading.current_thread())
            else:
                self._connections.discard(conn)
                self._threads.discard(threading.current_thread())


def _matches(pattern: re.Pattern[str] | None, path: str) -> bool:
    return pattern is None or pattern.fullmatch(path) is not None


def _shutdown_quietly(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 resets connections when a test opens dozens at once.
    request_queue_size = 1024  # the 500-stream test opens hundreds at once

    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn); skip that, it can be slow.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = int(self.server_address[1])


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    server: _Server

    # -- connection setup / teardown

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, add=True)

    def handle(self) -> None:
        # A client may reset an idle keep-alive connection (a pool being garbage-collected): normal.
        with contextlib.suppress(ConnectionError):
            super().handle()

    def finish(self) -> None:
        self.server.fake._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr lines
        pass

    # -- request handling

    def _dispatch(self) -> None:
        fake = self.server.fake
        req = self._read_request()
        reply = fake._answer(req)
        end = self._send(reply)
        if end is _End.COMPLETED:
            if reply.streaming:
                fake._count_completed_stream()
            return
        self.close_connection = True
        if end is not _End.STOPPING:
            fake._count(end)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _read_request(self) -> RecordedRequest:
        parts = urlsplit(self.path)
        return RecordedRequest(
            method=self.command.upper(),
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=Headers(self.headers.items()),
            body=self._read_body(),
        )

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return self._read_chunked_body()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked_body(self) -> bytes:
        body = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():  # trailers, then the final blank line
                    pass
                return bytes(body)
            body += self.rfile.read(size)
            self.rfile.readline()  # CRLF after the chunk data

    # -- response writing

    def _send(self, reply: Reply) -> _End:
        if reply.delay_s > 0:
            end = self._hold(reply.delay_s)
            if end is not None:
                return end
        try:
            self._write_head(reply)
            if reply.chunks is None:
                self.wfile.write(reply.body)
                return _End.COMPLETED
            return self._write_chunks(reply.chunks)
        except OSError:  # a write failed: the client went away (or stop() closed the socket)
            return self._gone()

    def _write_head(self, reply: Reply) -> None:
        self.send_response_only(reply.status)
        present = {name.lower() for name in reply.headers}
        if "date" not in present:
            self.send_header("Date", email.utils.formatdate(usegmt=True))
        if "server" not in present:
            self.send_header("Server", self.server.fake.server_header)
        for name, value in reply.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(name, value)
        if reply.chunks is None:
            self.send_header("Content-Length", str(len(reply.body)))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _write_chunks(self, parts: Iterable[Part]) -> _End:
        for part in parts:
            if isinstance(part, Pause | Stall):
                seconds = part.seconds if isinstance(part, Pause) else min(part.max_seconds, STALL_LIMIT_S)
                end = self._hold(seconds)
                if end is not None:
                    return end
                if isinstance(part, Stall):  # the stall ran out: drop the connection
                    self._abort(reset=False)
                    return _End.ABORTED
            elif isinstance(part, Abort):
                self._abort(reset=part.reset)
                return _End.ABORTED
            elif part:
                if self._client_gone(0):
                    return self._gone()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")
        return _End.COMPLETED

    def _abort(self, *, reset: bool) -> None:
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # the fd really closes (RST) once rfile lets go of it
            self.rfile.close()
        else:
            _shutdown_quietly(self.connection)

    # -- waiting while watching the client

    def _hold(self, seconds: float) -> _End | None:
        """Wait ``seconds``; None if the time passed, else why the wait ended early."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self.server.fake._stopping.is_set():
                return _End.STOPPING
            # One wait for the whole pause, not a poll: `stop()` shuts the socket down, which wakes
            # it as surely as a client leaving (hundreds of paused streams would otherwise keep
            # the GIL busy polling).
            if self._client_gone(remaining):
                return self._gone()
        return None

    def _gone(self) -> _End:
        return _End.STOPPING if self.server.fake._stopping.is_set() else _End.CLIENT_GONE

    def _client_gone(self, timeout: float) -> bool:
        """True if the peer closed its end (socket readable and at EOF, or reset)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], timeout)
            if not readable:
                return False
            data = self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True
        if data:  # the client sent something (a pipelined request?): not a disconnect
            time.sleep(min(timeout, POLL_S))
            return False
        return True
