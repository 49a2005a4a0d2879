#!/usr/bin/env python3
"""Build `llm-sidecar` as a PyInstaller one-folder executable for app bundles (Tauri, Electron).

One-folder, not one-file: a one-file build unpacks itself into a temporary directory at every
start (0.43 s to the first answer against 0.12 s for the installed package when measured).

The output is `dist/llm-sidecar-<target triple>/`, holding the executable of the same name and
its `_internal/` folder, which must stay beside it. `--onefile` makes the single file
`dist/llm-sidecar-<target triple>` instead, for Tauri's `externalBin`, which copies one file per
binary next to the app on every platform (it pays the unpacking at every start). The triple is the one Tauri's `externalBin` appends (`rustc --print
host-tuple` when rustc is present, else derived from this machine), e.g.
`llm-sidecar-x86_64-unknown-linux-gnu`, `llm-sidecar-aarch64-apple-darwin`,
`llm-sidecar-x86_64-pc-windows-msvc.exe`.

Start-up is what users feel, so the one-folder build keeps its modules as plain `.pyc` files
beside the executable (PyInstaller's `noarchive`: no archive to decompress each module from, ~17
ms sooner to the first answer here, for ~23 MB more on disk), and both builds leave out two of
PyInstaller's runtime hooks that run before the sidecar's first line (`DROPPED_RUNTIME_HOOKS`):
they import multiprocessing, subprocess and pkgutil at every start, ~12 ms here, for features the
sidecar never uses. PyInstaller's command line can do neither of the two, so the build writes
the spec file (`pyi-makespec`, the same options), edits it (`edit_spec`), and builds from it.

The sidecar imports most of its modules on first use (services, providers, the MCP SDK, keyring's
backends, structlog, the gateway), which PyInstaller's import analysis cannot see; every
`sidecar` submodule and the packages they load by name are collected explicitly, so a module added
later comes along without touching this script.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Packages whose modules are loaded by name at run time (plugins, backends, lazy imports).
COLLECT_SUBMODULES = (
    "sidecar",
    "mcp",
    "keyring",
    "jaraco",
    "secretstorage",
    "jeepney",
    "structlog",
    "anyio",
    "httpx2",
    "uvicorn",
    "httptools",  # the gateway's HTTP parser, imported by uvicorn's httptools protocol when it starts
    "starlette",
    "sse_starlette",
    "platformdirs",
)
# Packages that read their own files (the sidecar's catalogs) or their metadata (keyring finds
# its backends through entry points; several packages ask importlib.metadata for their version).
COLLECT_DATA = ("sidecar",)
# Modules the sidecar never loads: some fail or exit when imported (mcp's CLI needs typer), and
# test helpers would drag pytest and setuptools in, whose runtime hooks cost every start.
SKIP_PREFIXES = ("mcp.cli", "uvicorn.workers", "pytest", "_pytest", "setuptools", "pkg_resources")
SKIP_PARTS = ("tests", "testing", "testclient", "pytest_plugin", "__main__")
COPY_METADATA = (
    "keyring",
    "mcp",
    "llm-sidecar-daemon",
    "httpx2",
    "anyio",
    "pydantic",
    "starlette",
    "uvicorn",
)


# PyInstaller runtime hooks the sidecar does not need, left out of the executable's start: the
# multiprocessing one serves child processes started by multiprocessing (the sidecar starts none;
# uvicorn's supervisors import it but are never run), the pkgutil one lists modules inside the
# archive for `pkgutil.iter_modules` (nothing the sidecar loads calls it).
DROPPED_RUNTIME_HOOKS = ("pyi_rth_multiprocessing", "pyi_rth_pkgutil")
# The lines of a generated spec file that `edit_spec` changes (it fails if they are not there).
_SPEC_ARCHIVE = "noarchive=False,"
_SPEC_PYZ = "pyz = PYZ(a.pure)"


class SpecError(RuntimeError):
    """The generated spec file did not have a line `edit_spec` changes (another PyInstaller)."""


def edit_spec(text: str, *, onefile: bool) -> str:
    """The spec file `text` with the runtime hooks of DROPPED_RUNTIME_HOOKS left out and, for the
    one-folder build, the modules kept as files (a one-file build would unpack each at every start)."""
    for line in (_SPEC_ARCHIVE, _SPEC_PYZ):
        if text.count(line) != 1:
            raise SpecError(f"the spec file PyInstaller wrote has no single {line!r}")
    if not onefile:
        text = text.replace(_SPEC_ARCHIVE, "noarchive=True,")
    drop = f"a.scripts = [s for s in a.scripts if s[0] not in {DROPPED_RUNTIME_HOOKS!r}]\n"
    return text.replace(_SPEC_PYZ, drop + _SPEC_PYZ)


def target_triple() -> str:
    rustc = shutil.which("rustc")
    if rustc:
        out = subprocess.run([rustc, "--print", "host-tuple"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}.get(
        machine, machine
    )
    if sys.platform == "darwin":
        return f"{arch}-apple-darwin"
    if sys.platform == "win32":
        return f"{arch}-pc-windows-msvc"
    libc = "musl" if "musl" in (sysconfig.get_config_var("HOST_GNU_TYPE") or "") else "gnu"
    return f"{arch}-unknown-linux-{libc}"


def _installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def _importable(name: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def spec_args(name: str, work: Path, *, onefile: bool = False) -> list[str]:
    """`pyi-makespec`'s arguments: what goes into the build and how it starts."""
    args = [
        str(ROOT / "sidecar" / "__main__.py"),
        "--name",
        name,
        "--onefile" if onefile else "--onedir",
        "--console",
        "--log-level",
        "WARN",
        "--specpath",
        str(work),
        "--paths",
        str(ROOT),
    ]
    from PyInstaller.utils.hooks import collect_submodules

    def wanted(module: str) -> bool:
        return not module.startswith(SKIP_PREFIXES) and not set(module.split(".")) & set(SKIP_PARTS)

    for package in COLLECT_SUBMODULES:
        if _importable(package):
            for module in collect_submodules(package, filter=wanted):
                args += ["--hidden-import", module]
    for prefix in SKIP_PREFIXES:
        args += ["--exclude-module", prefix]
    for package in COLLECT_DATA:
        args += ["--collect-data", package]
    for dist_name in COPY_METADATA:
        if _installed(dist_name):
            args += ["--copy-metadata", dist_name]
    return args


def source_digest() -> str:
    """What the build is made of: the package's files, the lock, pyproject, this script, Python."""
    h = hashlib.sha256(sys.version.encode())
    files = sorted(p for p in (ROOT / "sidecar").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += [ROOT / "requirements" / "test.lock", ROOT / "pyproject.toml", Path(__file__).resolve()]
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller's work folder"
    )
    parser.add_argument("--triple", default=None, help="target triple in the name (default: this machine's)")
    parser.add_argument(
        "--if-changed",
        action="store_true",
        help="do nothing when the last build was made of the same sources",
    )
    parser.add_argument("--onefile", action="store_true", help="one self-unpacking file instead of a folder")
    args = parser.parse_args()
    name = f"llm-sidecar-{args.triple or target_triple()}"
    exe_name = name + (".exe" if sys.platform == "win32" else "")
    exe = args.dist / exe_name if args.onefile else args.dist / name / exe_name
    stamp = (
        args.dist / f".{name}-onefile-built-{source_digest()}"
        if args.onefile
        else args.dist / name / f".built-{source_digest()}"
    )
    if args.if_changed and stamp.exists() and exe.exists():
        print(f"build-binary: {exe} is up to date", file=sys.stderr)
        print(exe)
        return 0
    import PyInstaller.__main__

    # Byte-code compiled from the checkout, whatever PYTHONDONTWRITEBYTECODE says.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    spec = args.work / f"{name}.spec"
    args.work.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller.utils.cliutils.makespec",
            *spec_args(name, args.work, onefile=args.onefile),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    spec.write_text(edit_spec(spec.read_text(), onefile=args.onefile))
    PyInstaller.__main__.run(
        [
            str(spec),
            "--noconfirm",
            "--clean",
            "--log-level",
            "WARN",
            "--distpath",
            str(args.dist),
            "--workpath",
            str(args.work),
        ]
    )
    if not exe.exists():
        print(f"build-binary: {exe} was not built", file=sys.stderr)
        return 1
    stamp.touch()
    print(f"build-binary: built {exe}", file=sys.stderr)
    print(exe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
