"""The gateway in a spawned `llm-sidecar`: started by `gateway_start` over stdio and by
`[gateway] enabled = true`, and alone with `llm-sidecar gateway`; a host that never starts it
never imports the HTTP server stack."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time

import httpx2

from tests.harness import SIDECAR, Sidecar


def test_gateway_start_over_stdio_serves_health_and_status() -> None:
    with Sidecar() as sc:
        started = sc.result("gateway_start", {"port": 0})
        assert started["url"].startswith("http://127.0.0.1:")
        assert httpx2.get(started["url"] + "/health", timeout=5).json() == {"status": "ok"}
        status = sc.result("gateway_status", {})
        assert status["running"] and status["port"] == started["port"]
        assert sc.result("gateway_stop", {}) == {"stopped": True}


def test_config_enabled_starts_it_with_the_daemon() -> None:
    with Sidecar(config="[gateway]\nenabled = true\nport = 0\n") as sc:
        deadline = time.monotonic() + 10
        status = sc.result("gateway_status", {})
        while not status["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
            status = sc.result("gateway_status", {})
        assert status["running"]
        assert httpx2.get(status["url"] + "/health", timeout=5).status_code == 200


def test_host_that_never_starts_it_does_not_import_starlette_or_uvicorn() -> None:
    code = (
        "import sys, sidecar.cli, sidecar.app\n"
        "print(','.join(m for m in ('starlette', 'uvicorn', 'sidecar.gateway.asgi') if m in sys.modules))\n"
    )
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_headless_cli_serves_until_sigterm() -> None:
    home = tempfile.mkdtemp(prefix="sidecar-gw-")
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update({"SIDECAR_HOME": home, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    proc = subprocess.Popen(
        [SIDECAR, "gateway", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 20
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            found = re.search(r"listening on (http://\S+)", line)
            url = found.group(1) if found else None
        assert url is not None
        assert httpx2.get(url + "/health", timeout=5).status_code == 200
        assert httpx2.get(url + "/v1/models", timeout=5).status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None and proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
