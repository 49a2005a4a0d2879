"""Where `scripts/install-node-tools` put the Node tools of tests/node/package.json, and how a
test finds one: a missing tool fails the test (with the command that installs it), never skips it."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parent / "node" / "package-lock.json"
# One directory per lock, as scripts/install-node-tools makes it.
NODE_TOOLS_DIR = Path(
    os.environ.get("LLM_SIDECAR_NODE_TOOLS")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "llm-sidecar-node-tools"
    / hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
)


def node_tool(name: str) -> Path:
    """The path of `node_modules/.bin/<name>`, or a test failure saying how to install it."""
    if shutil.which("node") is None:
        pytest.fail("Node.js is not installed: run scripts/test (it installs nodejs and npm)", pytrace=False)
    path = NODE_TOOLS_DIR / "node_modules" / ".bin" / name
    if not path.exists():
        pytest.fail(f"{name} is not in {NODE_TOOLS_DIR}: run scripts/install-node-tools", pytrace=False)
    return path
