"""The checked-in schemas/ match the wire types, every method has a handler, and the layering of
DESIGN.md holds (a layer imports only from layers below it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from sidecar.app import build_services
from sidecar.config import Config
from sidecar.infra.keystore import MemoryStore
from sidecar.wire import schema
from sidecar.wire.methods import METHODS

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_json_schemas_match_the_code() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_schemas.py"), "--check", "--json-only"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_every_method_has_a_handler_and_an_object_schema() -> None:
    services = build_services(Config(), store=MemoryStore(), env={})
    assert set(METHODS) == set(services.handlers)
    for name in METHODS:
        assert schema.params_schema(name)["type"] == "object"
        assert schema.result_schema(name)["type"] == "object"


def test_openrpc_lists_methods_notifications_and_error_kinds() -> None:
    doc = schema.openrpc()
    assert [m["name"] for m in doc["methods"]] == list(METHODS)
    assert {n["name"] for n in doc["x-notifications"]} >= {"stream/event"}
    assert {"missing_key", "cancelled", "keychain_unavailable"} <= {k["kind"] for k in doc["x-error-kinds"]}
    msgspec.json.encode(doc)


# Bottom-up: each layer may import itself and the layers listed before it (plus the shared
# leaf modules errors, redact, logs, config, paths).
LAYERS = ["wire", "rpc", "core", "providers", "infra", "services"]
SHARED = {"errors", "redact", "logs", "config", "paths", "__init__"}
FORBIDDEN_ANYWHERE_BELOW_SERVICES = {"sidecar.app", "sidecar.process", "sidecar.cli"}
# The faces: each a room of its own over the services; none imports another, and no layer below
# imports any of them.
FACES = ("mcp", "gateway")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sidecar"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sidecar"))
    return found


def test_layers_import_only_downwards() -> None:
    problems = []
    for index, layer in enumerate(LAYERS):
        allowed = set(LAYERS[: index + 1]) | SHARED
        for path in (ROOT / "sidecar" / layer).glob("*.py"):
            for module in _imports(path):
                parts = module.split(".")
                top = parts[1] if len(parts) > 1 else "__init__"
                if module in FORBIDDEN_ANYWHERE_BELOW_SERVICES or top not in allowed:
                    problems.append(f"{path.relative_to(ROOT)} imports {module}")
    for face in FACES:
        for path in (ROOT / "sidecar" / face).rglob("*.py"):
            for module in _imports(path):
                parts = module.split(".")
                top = parts[1] if len(parts) > 1 else "__init__"
                if (top in FACES and top != face) or module in FORBIDDEN_ANYWHERE_BELOW_SERVICES:
                    problems.append(f"{path.relative_to(ROOT)} imports {module}")
                if top in ("providers", "infra"):  # faces speak to services, not to what they use
                    problems.append(f"{path.relative_to(ROOT)} imports {module}")
    # The two layers that must know nothing of each other's neighbours:
    for path in (ROOT / "sidecar" / "rpc").glob("*.py"):
        for module in _imports(path):
            if module.startswith(("sidecar.providers", "sidecar.infra", "sidecar.services", "sidecar.core")):
                problems.append(f"{path.relative_to(ROOT)} imports {module}")
    for path in (ROOT / "sidecar" / "infra").glob("*.py"):
        for module in _imports(path):
            if module.startswith(("sidecar.rpc", "sidecar.providers")):
                problems.append(f"{path.relative_to(ROOT)} imports {module}")
    assert problems == []


# Loaded on first use only; the team-mode drivers only when a URL configures them.
HEAVY = (
    "httpx2",
    "aiohttp",
    "structlog",
    "keyring",
    "mcp",
    "psutil",
    "pydantic",
    "redis",
    "psycopg",
    "psycopg_pool",
)


def _printed_by(code: str) -> str:
    """What a fresh interpreter running `code` prints (a new process: imports start from nothing)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_start_up_imports_stay_light() -> None:
    code = (
        f"import sys, sidecar.cli, sidecar.cli.serve, sidecar.app\nHEAVY = {HEAVY!r}\n"
        "sidecar.cli.serve._parser()\n"  # what `llm-sidecar` with no subcommand builds at every start
        "heavy = [m for m in HEAVY if m in sys.modules]\n"
        "heavy += [m for m in sys.modules if m.startswith('sidecar.cli.') and m not in ('sidecar.cli.serve', 'sidecar.cli.help')]\n"
        "print(','.join(heavy))\n"
    )
    assert _printed_by(code) == ""


# What the early answer must not import: the event loop (most of start-up, which it exists to
# avoid) and everything built on it (`sidecar.app` is where the test stops), pathlib (with
# urllib.parse and ipaddress: `sidecar.paths` spells the paths without it), threading (`redact`
# locks with `_thread`), platformdirs (`sidecar.paths` knows Linux's usual answer), besides what no
# start-up may import.
NOT_BEFORE_THE_EARLY_ANSWER = (
    "asyncio",
    "pathlib",
    "urllib.parse",
    "ipaddress",
    "threading",
    "platformdirs",
    "anyio",
    "concurrent.futures",
    "ssl",
    "logging",
    "argparse",
    "sidecar.process",
    "sidecar.rpc.stdio",
    "sidecar.rpc.dispatcher",
    "sidecar.core.catalog",
    *HEAVY,
)


@pytest.mark.parametrize("home_variable", ["SIDECAR_HOME", "HOME"])  # HOME: the OS's data directory
def test_the_early_answer_goes_out_before_the_event_loop_is_imported(
    tmp_path: Path, home_variable: str
) -> None:
    # The daemon's own start (`llm-sidecar` as a host spawns it, an `info` waiting on stdin), stopped
    # where it imports the app: the modules loaded by then are what the early answer cost.
    code = (
        "import os, sys, types\n"
        "r, w = os.pipe()\n"
        'os.write(w, b\'{"jsonrpc":"2.0","id":1,"method":"info"}\\n\')\n'
        "os.dup2(r, 0)\n"
        "app = types.ModuleType('sidecar.app')\n"
        "def stop(name):\n"
        f"    loaded = [m for m in {NOT_BEFORE_THE_EARLY_ANSWER!r} if m in sys.modules]\n"
        "    sys.stderr.write('LOADED:' + ','.join(loaded) + '\\n')\n"
        "    sys.exit(0)\n"
        "app.__getattr__ = stop\n"
        "sys.modules['sidecar.app'] = app\n"
        "from sidecar.cli import main\n"
        "main([])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={home_variable: str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert '"id":1,"result":{"version"' in proc.stdout, proc.stderr  # it did answer early
    assert "LOADED:\n" in proc.stderr, proc.stderr


def test_what_the_first_answer_needs_loads_neither_argparse_nor_the_model_catalog() -> None:
    # A host spawns `llm-sidecar` with no option and asks `info` first: neither the argument
    # parser (argparse, gettext) nor the catalog's table is needed for that.
    code = (
        "import sys, sidecar.cli, sidecar.cli.serve, sidecar.process, sidecar.services.about\n"
        "print(','.join(m for m in ('argparse', 'sidecar.core.catalog') if m in sys.modules))\n"
    )
    assert _printed_by(code) == ""


def test_start_up_loads_the_structs_of_info_only() -> None:
    # The METHODS table names its structs; each method's load when it is first called.
    code = (
        "import sys, sidecar.cli, sidecar.cli.serve, sidecar.process, sidecar.services.about\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('sidecar.wire.'))))\n"
    )
    loaded = set(_printed_by(code).split(","))
    assert loaded == {
        "sidecar.wire.base",
        "sidecar.wire.invalid",  # errors and the dispatcher explain invalid params with it
        "sidecar.wire.methods",
        "sidecar.wire.catalog",  # InfoResult
        "sidecar.wire.chat",  # what catalog's params use
    }


# A dataclass costs its module ~3.5M instructions at import (each method is generated source,
# parsed and compiled), a frozen msgspec Struct ~0.15M: the records that the first event-loop
# answer (`list_models`) loads are Structs. The catalog's stay dataclasses (plain Python data, no
# msgspec: test_catalog), and so do the keystore's.
DATACLASSES_AT_THE_FIRST_LOOP_ANSWER = {"sidecar.core.catalog", "sidecar.core.cost", "sidecar.infra.keystore"}
# Nor does it import what only later calls use (a stub answer's seed, a tool call's id, stored prices).
NOT_BEFORE_THE_FIRST_LOOP_ANSWER = ("hashlib", "secrets", "random", "json", *HEAVY)


def test_what_the_first_loop_answer_loads_defines_no_other_dataclass_nor_imports_later_needs(
    tmp_path: Path,
) -> None:
    code = (
        "import dataclasses, sys\n"
        "from sidecar.app import build_services\n"
        "from sidecar.config import Config\n"
        "import sidecar.process\n"
        f"services = build_services(Config(), env={{'SIDECAR_HOME': {str(tmp_path)!r}}})\n"
        "services.handlers['list_models']\n"
        "services.catalog\n"
        "print(','.join(sorted({name for name, module in list(sys.modules.items()) if name.startswith('sidecar')"
        " for value in vars(module).values() if isinstance(value, type) and value.__module__ == name"
        " and dataclasses.is_dataclass(value)})))\n"
        f"print('loaded:' + ','.join(m for m in {NOT_BEFORE_THE_FIRST_LOOP_ANSWER!r} if m in sys.modules))\n"
    )
    dataclass_modules, loaded = _printed_by(code).split("\n")
    assert set(dataclass_modules.split(",")) <= DATACLASSES_AT_THE_FIRST_LOOP_ANSWER
    assert loaded == "loaded:"


def test_every_struct_the_methods_table_names_is_a_wire_type() -> None:
    from sidecar.wire.base import Params, Wire
    from sidecar.wire.methods import METHODS, NOTIFICATIONS

    for spec in METHODS.values():
        assert issubclass(spec.params, Params), spec.name
        assert issubclass(spec.result, Wire), spec.name
    for note in NOTIFICATIONS.values():
        assert issubclass(note.params, Wire), note.name


def test_groups_name_exactly_each_services_handlers() -> None:
    from sidecar.app import GROUPS

    services = build_services(Config(), store=MemoryStore(), env={})
    for group, names in GROUPS.items():
        assert set(getattr(services, group).handlers()) == set(names), group


def test_the_default_storage_and_coordination_load_no_driver() -> None:
    code = (
        "import sys\n"
        "from sidecar.config import Config\n"
        "from sidecar.infra import coordination, storage\n"
        "from sidecar.infra.db import Database\n"
        "coord = coordination.from_config(Config().coordination)\n"
        "assert coord.engine == 'local', coord.engine\n"
        "engine = storage.open_engine(Config().storage, {}, Database(__import__('pathlib').Path('/nonexistent/x.db')))\n"
        "assert engine.engine == 'sqlite', engine.engine\n"
        "print(','.join(m for m in ('redis', 'psycopg', 'psycopg_pool', 'sidecar.infra.redis_coordination') if m in sys.modules))\n"
    )
    assert _printed_by(code) == ""
