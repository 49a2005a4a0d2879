"""The host's handshake, answered before the event loop exists.

Hosts spawn the sidecar and send their first request (`info`) at once, and importing asyncio and
anyio is most of the time to an answer. So before either is imported, the daemon looks, without
waiting, whether stdin already holds bytes (`select` with a zero timeout, on POSIX only). If it
does, it reads once, answers every well-formed line-framed request for the handshake method in
that read, and leaves everything else of the read to the stdin reader (`stdio.StdinReader`) as
an `Early`: the splitter that cut the read (its framing decision, a partial last message), the
other messages in order, and whether the input ended. The loop then carries on exactly as if it
had made that read itself. Nothing else waits: a host that writes later is answered by the loop.

Only a request (with an id) for the method, in a line-framed read, with params the caller
`accepts`, is answered here. Notifications, batches, invalid params, oversize or malformed lines
and LSP (`Content-Length`) connections are left to the loop, which answers them as the contract
says. Answers go straight to the protocol descriptor, before anything else is written there, up
to `ANSWER_BUDGET` bytes, which any pipe takes without blocking: a host that writes much before
it reads cannot deadlock against this path; requests past the budget are left to the loop.

`protect_stdout()` is here because it must run before the first early answer.

Must not know: asyncio or anyio (not even through an import: avoiding them is the point, and a
test checks it), which method the handshake is or what its answer holds (the caller gives both),
services.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable, Sequence
from typing import Final

import msgspec

from sidecar.rpc import envelope
from sidecar.rpc.envelope import Request, RequestId
from sidecar.rpc.framing import Detector, Piece

# One read of stdin, here and in the stdin reader: 64 KiB, a pipe's capacity (a larger read
# buffer is mmap'ed and unmapped on every read).
READ_CHUNK: Final = 64 * 1024
# The least a pipe holds: Linux gives a pipe one page once a user's pipes take too much memory.
ANSWER_BUDGET: Final = 4096

Accepts = Callable[[msgspec.Raw | None], bool]
Answer = Callable[[RequestId], bytes]


def protect_stdout() -> int:
    """Return a private duplicate of fd 1 for the protocol; fd 1 itself then points at stderr."""
    sys.stdout.flush()
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto_fd


class Early:
    """What the early read leaves to the stdin reader: the splitter that cut it, the messages not
    answered (in order), whether the input ended, and whether anything was answered."""

    __slots__ = ("answered", "ended", "pieces", "splitter")

    def __init__(self, splitter: Detector, pieces: list[Piece], *, ended: bool, answered: bool) -> None:
        self.splitter = splitter
        self.pieces = pieces
        self.ended = ended
        self.answered = answered


def split(
    pieces: Sequence[Piece], *, method: str, accepts: Accepts, answer: Answer, budget: int = ANSWER_BUDGET
) -> tuple[bytes, list[Piece]]:
    """The answers to the requests for `method` among `pieces` whose params `accepts` takes (as
    many as fit in `budget` bytes), and every other piece, in order."""
    answers: list[bytes] = []
    used = 0
    kept: list[Piece] = []
    for piece in pieces:
        reply = _answer(piece, method, accepts, answer)
        if reply is None or used + len(reply) > budget:
            kept.append(piece)
            continue
        answers.append(reply)
        used += len(reply)
    return b"".join(answers), kept


def _answer(piece: Piece, method: str, accepts: Accepts, answer: Answer) -> bytes | None:
    # A line that does not even contain the name is not decoded (a request naming the method with
    # escapes is left to the loop, which answers it all the same).
    if not isinstance(piece, bytes) or piece.find(method.encode()) < 0:
        return None
    msg = envelope.decode(piece)
    if not isinstance(msg, Request) or msg.method != method:
        return None
    return answer(msg.id) if accepts(msg.params) else None


def answer_waiting(
    in_fd: int,
    out_fd: int,
    *,
    max_line: int,
    method: str,
    accepts: Accepts,
    answer: Answer,
) -> Early | None:
    """Answer the requests for `method` already waiting on `in_fd` (see the module docstring);
    None when nothing is waiting, or stdin cannot be asked without waiting."""
    if not _readable_now(in_fd):
        return None
    try:
        chunk = os.read(in_fd, READ_CHUNK)
    except BlockingIOError:
        return None
    except OSError:  # as the stdin reader does: a read that fails is the end of the input
        chunk = b""
    answers, early = take(chunk, max_line=max_line, method=method, accepts=accepts, answer=answer)
    if answers:
        _write_all(out_fd, answers)
    return early


def take(
    chunk: bytes, *, max_line: int, method: str, accepts: Accepts, answer: Answer
) -> tuple[bytes, Early]:
    """One read of stdin (b"" at its end): the answers to give now, and what the reader takes over."""
    splitter = Detector(max_line)
    pieces = splitter.feed(chunk) if chunk else splitter.finish()
    answers = b""
    if splitter.framing == "lines":  # LSP, or not decided yet: the loop answers in its framing
        answers, pieces = split(pieces, method=method, accepts=accepts, answer=answer)
    return answers, Early(splitter, pieces, ended=not chunk, answered=bool(answers))


def _readable_now(fd: int) -> bool:
    """Whether a read of `fd` returns at once; False where that cannot be asked (Windows)."""
    if os.name != "posix":
        return False
    try:
        ready, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(ready)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:  # a descriptor the host made non-blocking: within the budget
                select.select([], [fd], [])
    except OSError:  # the host is gone: the loop finds out for itself
        return
