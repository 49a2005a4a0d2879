"""Ids unique across processes and machines without a system call per id: a random prefix drawn once
per process (and again in a forked child) followed by a counter.

`uuid4` reads the kernel's random source on every call: about 1 µs on the 2-core machine, and it
lets go of the GIL, so under load a request that asks for one may wait out another thread's
time slice. Two of n processes share a 64-bit prefix with a chance of about n² / 2⁶⁵ (1 in 10¹¹
for ten thousand processes); ids of one process never repeat.

Must not know: what the ids name.
"""

from __future__ import annotations

import itertools
import os

_prefix = os.urandom(8).hex()
_counter = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(8).hex()
    _counter = itertools.count()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """32 hex characters, like `uuid4().hex`: 16 of the process's prefix, 16 of its counter."""
    return f"{_prefix}{next(_counter):016x}"
