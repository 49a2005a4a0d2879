"""The real probe on this machine: its figures against /proc/meminfo, os.cpu_count() and the disk,
and GPU detection through a real `nvidia-smi` subprocess (a stand-in script on PATH)."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time
from pathlib import Path

import msgspec
import pytest

from sidecar.core.recommend import recommend
from sidecar.infra import hardware
from sidecar.infra.hardware import nearest_existing_dir, ollama_models_dir, probe

MiB = 1024 * 1024
posix_only = pytest.mark.skipif(os.name != "posix", reason="the stand-in nvidia-smi is a shell script")


def meminfo() -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        value = rest.split()
        if value and value[-1] == "kB":
            fields[key] = int(value[0]) * 1024
    return fields


@pytest.fixture
def no_gpu_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only an empty directory of ours (for stand-ins) and the system's basics."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return bin_dir


def fake_nvidia_smi(bin_dir: Path, body: str) -> None:
    script = bin_dir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_probe_matches_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "not" / "yet" / "there"))
    probe()  # the first call pays for importing psutil, which a slow machine stretches
    started = time.perf_counter()
    hw = probe()
    elapsed = time.perf_counter() - started
    assert elapsed < 1.5, f"probe took {elapsed:.2f} s"  # no wait as long as nvidia-smi's 2 s limit

    assert hw.cpu_cores_logical == os.cpu_count()
    assert hw.cpu_cores_physical is None or 1 <= hw.cpu_cores_physical <= hw.cpu_cores_logical
    assert hw.cpu_arch and hw.os
    assert 0 < hw.available_ram_bytes <= hw.total_ram_bytes

    assert hw.models_dir == str(tmp_path / "not" / "yet" / "there")
    free = shutil.disk_usage(tmp_path).free
    assert hw.free_disk_bytes is not None
    assert abs(hw.free_disk_bytes - free) < 256 * MiB

    assert all(g.memory_total_bytes > 0 for g in hw.gpus)
    if sys.platform.startswith("linux"):
        assert hw.os == "linux" and not hw.unified_memory
        info = meminfo()
        assert hw.total_ram_bytes == info["MemTotal"]
        assert abs(hw.available_ram_bytes - info["MemAvailable"]) < max(512 * MiB, info["MemTotal"] // 10)


def test_probe_feeds_the_policy_and_encodes_as_json() -> None:
    hw = probe()
    rec = recommend(hw, set(), ["openai:gpt-4o-mini"])
    assert rec.tier in {"low", "medium", "high"}
    assert rec.recommendations or rec.cloud_suggestions
    encoded = msgspec.json.decode(msgspec.json.encode(hw))
    assert encoded["total_ram_bytes"] == hw.total_ram_bytes


def test_models_dir_argument_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path / "a" / "b"
    assert probe(str(deep)).models_dir == str(deep)
    assert nearest_existing_dir(deep) == tmp_path

    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    assert ollama_models_dir(home=tmp_path) in {
        tmp_path / ".ollama" / "models",
        Path("/usr/share/ollama/.ollama/models"),  # the Linux service install, when present
    }
    (tmp_path / ".ollama" / "models").mkdir(parents=True)
    assert ollama_models_dir(home=tmp_path) == tmp_path / ".ollama" / "models"
    assert ollama_models_dir({"OLLAMA_MODELS": "~/m"}, home=tmp_path) == Path("~/m").expanduser()


@posix_only
def test_nvidia_smi_on_path_is_run_and_parsed(no_gpu_tools: Path) -> None:
    fake_nvidia_smi(
        no_gpu_tools,
        '[ "$1" = "--query-gpu=name,memory.total,memory.free" ] '
        '&& [ "$2" = "--format=csv,noheader,nounits" ] || exit 2\n'
        'echo "NVIDIA GeForce RTX 4090, 24564, 23012"',
    )
    hw = probe()
    assert [(g.name, g.memory_total_bytes, g.memory_free_bytes, g.kind) for g in hw.gpus] == [
        ("NVIDIA GeForce RTX 4090", 24564 * MiB, 23012 * MiB, "nvidia")
    ]
    assert recommend(hw, set(), []).memory_source == "nvidia"


@posix_only
def test_failing_nvidia_smi_means_no_gpu(no_gpu_tools: Path) -> None:
    fake_nvidia_smi(no_gpu_tools, 'echo "NVIDIA-SMI has failed because it couldn\'t communicate"; exit 9')
    assert probe().gpus == ()


@posix_only
def test_hanging_nvidia_smi_is_cut_off(no_gpu_tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "NVIDIA_SMI_TIMEOUT_S", 0.3)
    # not `exec`: the shell's child keeps the pipe open unless the whole group is killed
    fake_nvidia_smi(no_gpu_tools, 'echo "NVIDIA GeForce RTX 4090, 24564, 23012"; sleep 30; echo')
    started = time.perf_counter()
    hw = probe()
    assert time.perf_counter() - started < 10  # cut off, not left to its `sleep 30`
    assert hw.gpus == ()


def test_no_nvidia_smi_means_no_gpu(no_gpu_tools: Path) -> None:
    if sys.platform == "darwin":
        pytest.skip("an Apple Silicon GPU may be reported")
    assert shutil.which("nvidia-smi") is None
    assert probe().gpus == ()
