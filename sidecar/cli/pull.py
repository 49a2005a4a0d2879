"""`llm-sidecar pull MODEL`: the `ollama_pull` method with a progress bar on stderr.

Ollama reports each layer from zero again; the bar shows bytes over all layers against the layer
sizes known so far (as the MCP face's progress does). When stderr is not a terminal, each status
change is one line instead of a redrawn bar.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sidecar.cli.common import Session, human_bytes, run_session
from sidecar.wire.local import PullProgressParams

BAR_WIDTH = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an Ollama model, e.g. llama3.2:3b (see llm-sidecar recommend)")


def run(args: argparse.Namespace) -> int:
    return run_session(args, lambda s: _pull(s, args.model))


class ProgressBar:
    def __init__(self, live: bool) -> None:
        self.live = live
        self.layers: dict[str, tuple[int, int]] = {}
        self.status = ""
        self.drawn = False

    def update(self, method: str, params: Any) -> None:
        if not isinstance(params, PullProgressParams):
            return
        if params.digest and params.total:
            self.layers[params.digest] = (min(params.completed or 0, params.total), params.total)
        changed = params.status != self.status
        self.status = params.status
        if self.live:
            self.draw()
        elif changed:
            sys.stderr.write(f"{self.line()}\n")

    def line(self) -> str:
        done = sum(d for d, _ in self.layers.values())
        total = sum(t for _, t in self.layers.values())
        if not total:
            return self.status
        share = done / total
        filled = int(share * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        return f"[{bar}] {share:4.0%}  {human_bytes(done)} / {human_bytes(total)}  {self.status}"

    def draw(self) -> None:
        sys.stderr.write(f"\r\033[K{self.line()}")
        sys.stderr.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
        elif not self.live and self.layers:
            sys.stderr.write(f"{self.line()}\n")  # the final figure, whatever the last status was


async def _pull(session: Session, model: str) -> int:
    bar = ProgressBar(sys.stderr.isatty())
    try:
        result = await session.call("ollama_pull", {"model": model}, on_notify=bar.update)
    finally:
        bar.finish()
    print(f"Pulled {result.model}: {result.status}.")
    return 0
