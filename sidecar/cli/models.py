"""`llm-sidecar models [--provider ID]`: the `list_models` method as a table."""

from __future__ import annotations

import argparse
from typing import Any

from sidecar.cli.common import Session, run_session, table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", help="only this provider's models (openai, anthropic, ...)")


def run(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"provider": args.provider} if args.provider else {}
    return run_session(args, lambda s: _show(s, params))


async def _show(session: Session, params: dict[str, Any]) -> int:
    result = await session.call("list_models", params)
    rows = [
        (
            m.model,
            m.context_window,
            m.max_output_tokens,
            m.input_per_mtok,
            m.output_per_mtok,
            ", ".join(m.capabilities),
        )
        for m in result.models
    ]
    print(table(("model", "context", "max output", "$/M in", "$/M out", "capabilities"), rows))
    print(f"\n{len(rows)} models; prices of {result.pricing_date} (USD per million tokens)")
    return 0
