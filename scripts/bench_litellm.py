#!/usr/bin/env python3
"""LiteLLM's proxy for the gateway benchmark: installed into a throwaway venv of its own under the
user's cache directory (never the project's locks or .venv), started on 127.0.0.1 in front of the
same fake upstream the gateway uses, and stopped after the run.

- The pin is `LITELLM_VERSION`; 1.107.0 was a compromised release and is refused outright.
- `litellm[proxy]==<pin>` is tried first. When the package index lacks one of the extra's
  companion packages (`litellm-proxy`, `litellm-enterprise` at the exact pin), litellm itself is
  installed at the pin, then the proxy extra's requirements read from its own metadata, minus the
  ones the index does not have; the row says which were left out.
- Anything that fails (no index, no matching version, a proxy that does not answer) is an
  `Unavailable` with the reason, shown by the bench as a row that was not run.

Must not know: the sidecar; what is measured (bench_gateway does that).

    .venv/bin/python scripts/bench_litellm.py   # install (or reuse) the venv and print its note
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

LITELLM_VERSION: Final = "1.110.2"
COMPROMISED: Final = frozenset({"1.107.0"})
INSTALL_TIMEOUT_S: Final = 1200
START_TIMEOUT_S: Final = 120
_MISSING = re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-\[\]]+)")


class Unavailable(Exception):
    """LiteLLM's proxy could not be installed or started; the message says why, in a few words."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llm-sidecar-bench" / f"litellm-{LITELLM_VERSION}"


def _base_python() -> str:
    return str(getattr(sys, "_base_executable", None) or sys.executable)


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"pip did not finish within {INSTALL_TIMEOUT_S} s") from None


def _why(done: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    return (errors[-1] if errors else f"pip exited {done.returncode}")[:160]


def _proxy_requirements(venv: Path) -> list[str]:
    """The `proxy` extra's requirements as litellm's own metadata lists them, markers resolved."""
    script = (
        "import re\n"
        "from importlib.metadata import requires\n"
        "for text in requires('litellm') or ():\n"
        "    req, _, marker = text.partition(';')\n"
        "    if \"extra == 'proxy'\" not in marker:\n"
        "        continue\n"
        "    rest = marker.replace(\"extra == 'proxy'\", '').strip()\n"
        "    rest = re.sub(r'^and\\s+|\\s+and$', '', rest).strip()\n"
        "    print(req.strip() + (' ; ' + rest if rest else ''))\n"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise Unavailable("litellm's metadata could not be read")
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def install(venv: Path | None = None) -> str:
    """The venv's `litellm` ready to run (installed on first use); answers how it was installed."""
    if LITELLM_VERSION in COMPROMISED:
        raise Unavailable(f"litellm {LITELLM_VERSION} is a compromised release")
    venv = venv or cache_dir()
    ready = venv / ".ready"
    if ready.exists() and (venv / "bin" / "litellm").exists():
        return ready.read_text()
    if not (venv / "bin" / "python").exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(
            [_base_python(), "-m", "venv", str(venv)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if made.returncode != 0:
            raise Unavailable("no venv could be made: " + (made.stderr.strip().splitlines() or ["?"])[-1])
    done = _pip(venv, f"litellm[proxy]=={LITELLM_VERSION}")
    note = f"litellm[proxy] {LITELLM_VERSION}"
    if done.returncode != 0:
        if not _MISSING.search(done.stderr):
            raise Unavailable(_why(done))
        core = _pip(venv, f"litellm=={LITELLM_VERSION}")
        if core.returncode != 0:
            raise Unavailable(_why(core))
        wanted = _proxy_requirements(venv)
        left_out: list[str] = []
        for _ in range(4):  # each round drops what the index said it does not have
            done = _pip(venv, *wanted)
            missing = _MISSING.findall(done.stderr)
            if done.returncode == 0 or not missing:
                break
            gone = {re.split(r"[<>=!~\[ ]", m, maxsplit=1)[0].lower() for m in missing}
            left_out += [w for w in wanted if re.split(r"[<>=!~\[ ]", w, maxsplit=1)[0].lower() in gone]
            wanted = [w for w in wanted if w not in left_out]
        if done.returncode != 0:
            raise Unavailable(_why(done))
        note = f"litellm {LITELLM_VERSION}, proxy extra less {len(left_out)} pins not on the index"
        print(f"litellm: installed without {', '.join(left_out)} (not on the index)", file=sys.stderr)
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.strip()
    if version != LITELLM_VERSION:
        raise Unavailable(f"installed litellm is {version or 'missing'}, not {LITELLM_VERSION}")
    ready.write_text(note)
    return note


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """LiteLLM's proxy on 127.0.0.1, one model `gpt-4o-mini` pointed at an OpenAI-compatible
    `api_base`; stopped (its whole process group, which this class started) by `close`."""

    def __init__(self, api_base: str, api_key: str, venv: Path | None = None) -> None:
        venv = venv or cache_dir()
        self.key = "sk-bench-" + secrets.token_hex(16)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="bench-litellm-")
        config = Path(self._dir.name, "config.yaml")
        config.write_text(
            "model_list:\n"
            "  - model_name: gpt-4o-mini\n"
            "    litellm_params:\n"
            "      model: openai/gpt-4o-mini\n"
            f"      api_base: {api_base}\n"
            f"      api_key: {api_key}\n"
            "general_settings:\n"
            f"  master_key: {self.key}\n"
        )
        self._log = Path(self._dir.name, "proxy.log")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": self._dir.name,
            "LITELLM_LOG": "ERROR",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        command = [str(venv / "bin" / "litellm"), "--config", str(config)]
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._dir.name,
                start_new_session=True,
            )

    def wait_ready(self) -> float:
        """Seconds until the proxy answered its liveness route."""
        import httpx2

        started = time.monotonic()
        while time.monotonic() - started < START_TIMEOUT_S:
            if self.proc.poll() is not None:
                tail = self._log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise Unavailable(f"the proxy exited ({self.proc.returncode}): {tail[0][:120]}")
            try:
                if httpx2.get(self.url + "/health/liveliness", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx2.HTTPError:
                pass
            time.sleep(0.5)
        raise Unavailable(f"the proxy did not answer within {START_TIMEOUT_S} s")

    def rss(self) -> int:
        import psutil

        proc = psutil.Process(self.proc.pid)
        return int(sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]))

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._dir.cleanup()


def main() -> int:
    try:
        print(install())
    except Unavailable as exc:
        print(f"not available: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
