"""`llm-sidecar gateway`: the HTTP gateway alone. The gateway face parses its own arguments; this
module only hands it the way to build services (a face may not import the app)."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from sidecar.app import build_services
    from sidecar.gateway.cli import main as gateway_main

    return gateway_main(argv, build_services)
