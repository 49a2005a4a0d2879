"""`llm-sidecar recommend`: the `recommend_models` method, readable."""

from __future__ import annotations

import argparse
from typing import Any

from sidecar.cli.common import Session, human_bytes, run_session, table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--use", help="what the model is for (e.g. chat, code, vision)")
    parser.add_argument("--limit", type=int, default=6, help="how many (default 6)")


def run(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.use:
        params["use"] = args.use
    return run_session(args, lambda s: _show(s, params))


async def _show(session: Session, params: dict[str, Any]) -> int:
    result = await session.call("recommend_models", params)
    hw = result.hardware
    gpus = ", ".join(g.name for g in hw.gpus) or "no GPU found"
    print(
        f"This machine: {human_bytes(hw.total_ram_bytes)} RAM, {hw.cpu_cores_logical or '?'} CPU threads, "
        f"{gpus}; tier {result.tier}."
    )
    rows = [
        (r.model, r.parameter_size, human_bytes(r.download_bytes), r.installed, r.runs_on, r.why)
        for r in result.recommendations
    ]
    print(table(("model", "size", "download", "installed", "runs on", "why"), rows))
    if result.note:
        print(f"\n{result.note}")
    print("\nInstall one with: llm-sidecar pull <model>")
    return 0
