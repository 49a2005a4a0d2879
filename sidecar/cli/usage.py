"""`llm-sidecar usage [--by ...]`: the `usage_summary` method as a table.

The `--by` choices are the wire's `GroupBy` values, so a grouping the method learns (a gateway's
`client`, say) is offered here with no change.

Must not know: how the ledger stores rows.
"""

from __future__ import annotations

import argparse
from typing import Any, get_args

from sidecar.cli.common import Session, run_session, table
from sidecar.wire.usage import GroupBy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", choices=get_args(GroupBy), help="one row per group")
    parser.add_argument("--since", help="ISO date or time (default: the start of this month, UTC)")
    parser.add_argument("--until", help="ISO date or time; a bare date includes that day (default: now)")
    parser.add_argument("--provider", help="only this provider's requests")


def run(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"group_by": args.by, "since": args.since, "until": args.until}
    params["provider"] = args.provider
    return run_session(args, lambda s: _show(s, {k: v for k, v in params.items() if v is not None}))


async def _show(session: Session, params: dict[str, Any]) -> int:
    result = await session.call("usage_summary", params)
    print(f"Usage from {result.since} to {result.until}")
    groups = [*result.groups, result.total] if result.group_by else [result.total]
    rows = [
        (
            "total" if g is result.total else (g.key or "-"),
            g.requests,
            g.errors,
            g.input_tokens,
            g.output_tokens,
            round(g.cost_usd, 4),
            g.latency_ms_p50,
        )
        for g in groups
    ]
    first = result.group_by or "scope"
    print(table((first, "requests", "errors", "input tokens", "output tokens", "cost USD", "p50 ms"), rows))
    month = result.month
    print(
        f"\n{month.month}: spent ${month.spent_usd:.4f}, projected ${month.projected_usd:.4f} for the month"
    )
    return 0
