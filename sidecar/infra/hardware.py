"""The hardware probe: RAM, CPU, free disk where Ollama keeps models, and GPU memory.

`probe()` is blocking (psutil calls, at most two short subprocesses); run it in a worker thread.
It never raises for a missing or broken GPU tool: no answer means no GPU. GPU memory is found
without extra dependencies:

* NVIDIA: `nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits`
  when it is on PATH, with a 2 s timeout; its output is parsed by `parse_nvidia_smi`.
* Apple Silicon: the GPU shares RAM, and may wire about 2/3 of it up to 36 GiB of RAM and
  about 3/4 above (`sidecar.core.recommend.apple_gpu_working_set`); that share is reported as the
  GPU's `memory_total_bytes`, with `unified_memory=True`.
* AMD, Intel and other GPUs are not detected; such machines are judged by system RAM.

Subprocesses get stdin/stderr from /dev/null: the sidecar's stdin is the protocol and its stderr
the log, and neither may be touched by a child.

`HardwareInfo` and `GpuInfo` are defined in `sidecar.core.recommend` (the policy layer reads
them and may not import infra) and re-exported here.

Must not know: the protocol, the recommendation policy, Ollama's HTTP API.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from sidecar.core.recommend import GpuInfo, HardwareInfo, apple_gpu_working_set

__all__ = [
    "GpuInfo",
    "HardwareInfo",
    "nearest_existing_dir",
    "ollama_models_dir",
    "parse_nvidia_smi",
    "probe",
]

NVIDIA_SMI_TIMEOUT_S: Final = 2.0
SYSCTL_TIMEOUT_S: Final = 1.0
NVIDIA_SMI_ARGS: Final = (
    "--query-gpu=name,memory.total,memory.free",
    "--format=csv,noheader,nounits",
)
_MIB: Final = 1024 * 1024
_LINUX_SERVICE_MODELS_DIR: Final = Path("/usr/share/ollama/.ollama/models")
_ARCH_NAMES: Final = {"amd64": "x86_64", "x64": "x86_64", "x86_64": "x86_64", "aarch64": "arm64"}
_OS_NAMES: Final = {"darwin": "macos", "win32": "windows", "cygwin": "windows"}


def parse_nvidia_smi(output: str) -> tuple[GpuInfo, ...]:
    """GPUs from `nvidia-smi --query-gpu=name,memory.total,memory.free` CSV (noheader, nounits).

    One line per GPU, memory in MiB. Lines that are not GPUs (driver errors, "No devices were
    found") or have no numeric total are skipped; a free figure of "[N/A]" becomes None.
    """
    gpus: list[GpuInfo] = []
    for line in output.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]  # the name is the one field with text
        if len(parts) != 3:
            continue
        name, total, free = parts
        total_mib, free_mib = _mib(total), _mib(free)
        if total_mib is None or total_mib <= 0:
            continue
        gpus.append(
            GpuInfo(
                name=name or "NVIDIA GPU",
                memory_total_bytes=total_mib * _MIB,
                memory_free_bytes=None if free_mib is None else free_mib * _MIB,
                kind="nvidia",
            )
        )
    return tuple(gpus)


def _mib(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value >= 0 else None


def ollama_models_dir(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """Where Ollama keeps models: `OLLAMA_MODELS`, else `~/.ollama/models`.

    On Linux, when `~/.ollama/models` does not exist but the install script's service directory
    (`/usr/share/ollama/.ollama/models`) does, that one: the service runs as the `ollama` user.
    """
    env = os.environ if environ is None else environ
    configured = env.get("OLLAMA_MODELS", "").strip()
    if configured:
        return Path(configured).expanduser()
    per_user = (home if home is not None else Path.home()) / ".ollama" / "models"
    if sys.platform.startswith("linux") and not per_user.exists() and _LINUX_SERVICE_MODELS_DIR.is_dir():
        return _LINUX_SERVICE_MODELS_DIR
    return per_user


def nearest_existing_dir(path: Path) -> Path:
    """`path` if it is a directory, else its nearest existing ancestor (where a download would land)."""
    for candidate in (path, *path.parents):
        try:
            if candidate.is_dir():
                return candidate
        except OSError:
            continue
    return Path(path.anchor or os.curdir)


def probe(models_dir: str | None = None) -> HardwareInfo:
    """Measure this machine. Blocking; well under a second unless nvidia-smi is slow (2 s cap)."""
    import psutil  # lazily: only recommend_models pays for it

    memory = psutil.virtual_memory()
    total_ram = int(memory.total)
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False)
    machine = platform.machine().lower()

    target = Path(models_dir).expanduser() if models_dir else ollama_models_dir()
    where = nearest_existing_dir(target)
    try:
        free_disk: int | None = shutil.disk_usage(where).free
    except OSError:
        free_disk = None

    gpus = _nvidia_gpus()
    unified = sys.platform == "darwin" and _is_apple_silicon(machine)
    if unified:
        gpus += (
            GpuInfo(
                name=_apple_chip_name(),
                memory_total_bytes=apple_gpu_working_set(total_ram),
                memory_free_bytes=None,
                kind="apple_unified",
            ),
        )
        machine = "arm64"  # also when this Python runs under Rosetta

    return HardwareInfo(
        total_ram_bytes=total_ram,
        available_ram_bytes=int(memory.available),
        cpu_cores_physical=int(physical) if physical else None,
        cpu_cores_logical=int(logical),
        cpu_arch=_ARCH_NAMES.get(machine, machine or "unknown"),
        os=_OS_NAMES.get(sys.platform, "linux" if sys.platform.startswith("linux") else sys.platform),
        free_disk_bytes=free_disk,
        gpus=gpus,
        unified_memory=unified,
        models_dir=str(target),
    )


def _run(argv: list[str], timeout_s: float) -> str | None:
    """stdout of a short command, or None on any failure (missing, non-zero exit, timeout).

    The child gets its own process group, so a timeout kills whatever it started as well and
    nothing is left holding the pipe.
    """
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=os.name == "posix",
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),  # no console flash on Windows
        )
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=1.0)
        return None
    return out if proc.returncode == 0 else None


def _kill(proc: subprocess.Popen[str]) -> None:
    if sys.platform != "win32":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            return
        except OSError:
            pass
    proc.kill()


def _nvidia_gpus() -> tuple[GpuInfo, ...]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    out = _run([exe, *NVIDIA_SMI_ARGS], NVIDIA_SMI_TIMEOUT_S)
    return parse_nvidia_smi(out) if out else ()


def _is_apple_silicon(machine: str) -> bool:
    if machine == "arm64":
        return True
    return (_run(["sysctl", "-n", "hw.optional.arm64"], SYSCTL_TIMEOUT_S) or "").strip() == "1"


def _apple_chip_name() -> str:
    name = (_run(["sysctl", "-n", "machdep.cpu.brand_string"], SYSCTL_TIMEOUT_S) or "").strip()
    return name or "Apple Silicon GPU"
