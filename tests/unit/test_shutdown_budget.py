"""The process's own shutdown time limits add up to the contract's 2 s.

The end-to-end shutdown tests time the exit from the host, where a slow machine adds the
interpreter's teardown to it (`tests/harness.EXIT_BOUND_S`); that the process plans to be gone
within 2 s, whatever the machine, is a sum of its limits, checked here.
"""

from __future__ import annotations

from sidecar.process import (
    CLOSE_S,
    EOF_GRACE_S,
    EXIT_S,
    FLUSH_S,
    LEDGER_BY_S,
    SETTLE_S,
    SHUTDOWN_S,
)

CONTRACT_S = 2.0  # README: the process exits within 2 s of stdin EOF or SIGTERM


def test_the_steps_after_eof_fit_in_the_contract() -> None:
    assert SHUTDOWN_S <= CONTRACT_S
    # in-flight requests are answered (grace, then -32800 within the settle time) before the
    # ledger's deadline; then the services close, stdout is flushed and the interpreter exits
    assert EOF_GRACE_S + SETTLE_S <= LEDGER_BY_S
    assert LEDGER_BY_S + CLOSE_S + FLUSH_S + EXIT_S <= SHUTDOWN_S
    assert min(EOF_GRACE_S, SETTLE_S, CLOSE_S, FLUSH_S, EXIT_S) > 0
