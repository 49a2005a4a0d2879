"""The PyInstaller build of `llm-sidecar` (scripts/build_binary.py), made once per test session.

A build takes one to two minutes on a 2-core machine, so the session fixture builds it once and
reuses a build made of the same sources (`--if-changed`); every run of `scripts/test` therefore
tests a binary of the current code. `LLM_SIDECAR_BINARY_DIST` moves the output folder (default
`dist/` in the checkout, which git ignores).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 900


@pytest.fixture(scope="session")
def built_binary() -> Path:
    dist = Path(os.environ.get("LLM_SIDECAR_BINARY_DIST") or ROOT / "dist")
    build = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_binary.py"), "--if-changed", "--dist", str(dist)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if build.returncode != 0:
        pytest.fail(f"scripts/build_binary.py failed:\n{build.stderr[-4000:]}", pytrace=False)
    exe = Path(build.stdout.strip().splitlines()[-1])
    assert exe.is_file() and os.access(exe, os.X_OK), exe
    return exe
