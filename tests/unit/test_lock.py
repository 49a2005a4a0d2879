"""The lock files pin what pyproject.toml asks for, every pin carries hashes, and the scripts
install from them: a dependency's new release cannot change a clean install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")


def _pins(lock: str) -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, the pin's whole entry)], one per marker-specific line."""
    text = (ROOT / "requirements" / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text)
    pins: dict[str, list[tuple[str, str]]] = {}
    for entry in entries:
        match = _PIN.match(entry)
        if match:
            pins.setdefault(canonicalize_name(match[1]), []).append((match[2], entry))
    return pins


def _wanted(lock: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    if lock == "test.lock":
        reqs += [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]]
    reqs += [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    return reqs


@pytest.mark.parametrize("lock", ["run.lock", "test.lock"])
def test_every_dependency_is_pinned_within_its_range(lock: str) -> None:
    pins = _pins(lock)
    for req in _wanted(lock):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements/{lock}: run scripts/lock"
        for version, _ in pins[name]:
            assert req.specifier.contains(version, prereleases=True), (
                f"requirements/{lock} pins {req.name}=={version}, outside {req.specifier}: run scripts/lock"
            )


@pytest.mark.parametrize("lock", ["run.lock", "test.lock"])
def test_every_pin_carries_hashes(lock: str) -> None:
    for name, entries in _pins(lock).items():
        for _, entry in entries:
            assert "--hash=sha256:" in entry, f"{name} has no hash in requirements/{lock}"


def test_the_scripts_install_only_from_the_locks() -> None:
    venv = (ROOT / "scripts" / "venv").read_text()
    assert "--require-hashes --no-deps -r" in venv
    assert "--no-deps --no-build-isolation -e" in venv
    assert 'scripts/venv" run' in (ROOT / "scripts" / "run").read_text()
    assert "scripts/venv test" in (ROOT / "scripts" / "test").read_text()
