"""A private, isolated Secret Service for tests, and a way to run the key store against it.

`start_secret_service(state)` starts, under a temporary HOME/XDG_* tree, its own D-Bus session bus
(`dbus-daemon --fork`) and, depending on `state`:

- "unlocked":      gnome-keyring-daemon --unlock --components=secrets with a throwaway password
                   (the working keychain);
- "locked":        a login keyring created with one password, then the daemon restarted and
                   "unlocked" with a wrong one (gnome-keyring still exits 0; every use raises
                   keyring's KeyringLocked);
- "uninitialised": nothing started, but gnome-keyring is D-Bus-activatable and no login keyring
                   exists, so the first use needs a prompt that cannot be shown ("Prompt dismissed",
                   keyring's InitError);
- "absent":        a bus with no service directories at all: nothing provides or can activate
                   org.freedesktop.secrets (keyring falls back to its fail backend, NoKeyringError).

It returns a `SecretService` whose `env` is a complete environment for subprocesses
(DBUS_SESSION_BUS_ADDRESS, HOME, XDG_*; DISPLAY, WAYLAND_DISPLAY, provider keys and
PYTHON_KEYRING_BACKEND removed, so nothing reaches a real desktop or a real key). `stop()` ends
the processes it started, by PID (the bus, and every process owning a well-known name on that
private bus, i.e. the daemons it started or the bus activated), and removes the tree. All waits
are bounded.

`keyring` picks its backend from the process environment and caches it, so tests use the store
in a subprocess: `run_keystore(env, ops)` runs `python -m tests.keychain probe` with that env, which
performs `ops` on a `KeyringStore`/`KeyResolver` and prints the results as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]
REQUIRED_TOOLS = ("dbus-daemon", "dbus-send", "gnome-keyring-daemon", "secret-tool")
INSTALL_HINT = (
    "the real-keychain tests need gnome-keyring, libsecret-tools and dbus. Run scripts/test, which "
    "installs them (apt-get install -y --no-install-recommends gnome-keyring libsecret-tools dbus)."
)
SECRETS_NAME = "org.freedesktop.secrets"

# Variables that would let a test reach the developer's real session, keys or keyring choice.
_SCRUBBED = (
    "DBUS_SESSION_BUS_ADDRESS",
    "DBUS_STARTER_ADDRESS",
    "DBUS_STARTER_BUS_TYPE",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "GNOME_KEYRING_CONTROL",
    "GNOME_KEYRING_PID",
    "SSH_AUTH_SOCK",
    "PYTHON_KEYRING_BACKEND",
    "XDG_SESSION_TYPE",
    "XDG_CURRENT_DESKTOP",
    "XDG_DATA_DIRS",
    "XDG_CONFIG_DIRS",
)

State = Literal["unlocked", "locked", "uninitialised", "absent"]


class SecretServiceError(RuntimeError):
    """The private Secret Service could not be started."""


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def isolated_env(root: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED and not k.endswith("_API_KEY") and not k.startswith("SIDECAR_")
    }
    env.update(
        HOME=str(root),
        XDG_DATA_HOME=str(root / "data"),
        XDG_CACHE_HOME=str(root / "cache"),
        XDG_CONFIG_HOME=str(root / "config"),
        XDG_STATE_HOME=str(root / "state"),
        XDG_RUNTIME_DIR=str(root / "run"),
        NO_AT_BRIDGE="1",  # no accessibility bus for GTK bits of gnome-keyring
    )
    return env


_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:dir={run}</listen>
  <auth>EXTERNAL</auth>
  {servicedirs}
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def _run(
    cmd: Sequence[str], env: Mapping[str, str], *, input: str | None = None, timeout: float = 10.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd),
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def _bus_call(env: Mapping[str, str], method: str, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--reply-timeout=2000",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            f"org.freedesktop.DBus.{method}",
            *args,
        ],
        env,
        timeout=5.0,
    )


def name_owner_pid(env: Mapping[str, str], name: str) -> int | None:
    r = _bus_call(env, "GetConnectionUnixProcessID", f"string:{name}")
    if r.returncode != 0:
        return None
    match = re.search(r"uint32 (\d+)", r.stdout)
    return int(match.group(1)) if match else None


def bus_names(env: Mapping[str, str]) -> list[str]:
    r = _bus_call(env, "ListNames")
    if r.returncode != 0:
        return []
    return re.findall(r'string "([^"]+)"', r.stdout)


def _wait_for_owner(env: Mapping[str, str], name: str, deadline: float) -> int:
    # gnome-keyring-daemon forks and claims the name a few ms after `--unlock` returns.
    while True:
        pid = name_owner_pid(env, name)
        if pid is not None:
            return pid
        if time.monotonic() > deadline:
            raise SecretServiceError(f"{name} never appeared on the private bus")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            # "pid (comm) S ..." - comm may contain spaces/parens; the state follows the last ")".
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(pids: Sequence[int], timeout: float) -> None:
    own = {os.getpid(), os.getppid()}
    targets = [p for p in dict.fromkeys(pids) if p > 1 and p not in own]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in targets) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in targets:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class SecretService:
    root: Path
    env: dict[str, str]
    state: State
    password: str
    bus_pid: int
    pids: list[int] = field(default_factory=list)
    remove_root: bool = True
    setup_s: float = 0.0

    @property
    def home(self) -> Path:
        return self.root

    def owner_pids(self) -> list[int]:
        """PIDs owning a well-known name on this private bus: only processes this helper started,
        directly or through D-Bus activation."""
        pids: list[int] = []
        for name in bus_names(self.env):
            if name.startswith(":") or name == "org.freedesktop.DBus":
                continue
            pid = name_owner_pid(self.env, name)
            if pid is not None:
                pids.append(pid)
        return pids

    def stop(self, timeout: float = 5.0) -> None:
        if self.bus_pid and _alive(self.bus_pid):
            owners = self.owner_pids()
            _terminate([*owners, *self.pids], timeout)
        _terminate([self.bus_pid], timeout)
        self.bus_pid = 0
        if self.remove_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SecretService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_daemon(service: SecretService, password: str, deadline: float) -> None:
    r = _run(
        ["gnome-keyring-daemon", "--unlock", "--components=secrets"],
        service.env,
        input=password,
        timeout=max(0.5, deadline - time.monotonic()),
    )
    if r.returncode != 0:
        raise SecretServiceError(f"gnome-keyring-daemon --unlock failed ({r.returncode}): {r.stderr[-500:]}")
    service.pids.append(_wait_for_owner(service.env, SECRETS_NAME, deadline))


def start_secret_service(
    state: State = "unlocked",
    *,
    root: Path | None = None,
    password: str = "throwaway-test-password",
    timeout: float = 15.0,
) -> SecretService:
    """Start a private Secret Service in `state`; see the module docstring. Raises
    SecretServiceError (with what failed) if it cannot be started within `timeout` seconds."""
    missing = missing_tools()
    if missing:
        raise SecretServiceError(f"{', '.join(missing)} not found: {INSTALL_HINT}")
    started = time.monotonic()
    deadline = started + timeout
    remove_root = root is None
    # A short path under /tmp: the bus socket lives in it and AF_UNIX paths are limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="sidecar-kc-")) if root is None else root
    env = isolated_env(root)
    for sub in ("data", "cache", "config", "state"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    run_dir = root / "run"
    run_dir.mkdir(exist_ok=True)
    run_dir.chmod(0o700)

    servicedirs = "" if state == "absent" else "<standard_session_servicedirs/>"
    conf = root / "bus.conf"
    conf.write_text(_BUS_CONFIG.format(run=run_dir, servicedirs=servicedirs), encoding="utf-8")
    r = _run(
        [
            "dbus-daemon",
            f"--config-file={conf}",
            "--fork",
            "--nopidfile",
            "--print-address=1",
            "--print-pid=1",
        ],
        env,
        timeout=timeout,
    )
    lines = r.stdout.split()
    if r.returncode != 0 or len(lines) < 2:
        if remove_root:
            shutil.rmtree(root, ignore_errors=True)
        raise SecretServiceError(f"dbus-daemon did not start ({r.returncode}): {r.stderr[-500:]}")
    env["DBUS_SESSION_BUS_ADDRESS"] = lines[0]
    service = SecretService(
        root=root, env=env, state=state, password=password, bus_pid=int(lines[1]), remove_root=remove_root
    )
    try:
        if state == "unlocked":
            _start_daemon(service, password, deadline)
        elif state == "locked":
            # A login keyring with one item, then a daemon "unlocked" with the wrong password.
            _start_daemon(service, password, deadline)
            stored = _run(
                ["secret-tool", "store", "--label=seed", "service", "sidecar-test-seed", "username", "seed"],
                env,
                input="seed-value",
                timeout=5.0,
            )
            if stored.returncode != 0:
                raise SecretServiceError(f"could not seed the login keyring: {stored.stderr[-500:]}")
            _terminate(service.pids, 5.0)
            service.pids.clear()
            while name_owner_pid(env, SECRETS_NAME) is not None:
                if time.monotonic() > deadline:
                    raise SecretServiceError("the first gnome-keyring-daemon did not leave the bus")
                time.sleep(0.02)
            _start_daemon(service, password + "-but-wrong", deadline)
        elif state not in ("uninitialised", "absent"):
            raise ValueError(f"unknown state {state!r}")
    except BaseException:
        service.stop()
        raise
    service.setup_s = time.monotonic() - started
    return service


# --------------------------------------------------------------------------------------------------
# Running the key store in a subprocess with a given environment

PROBE_STDIN = '{"jsonrpc":"2.0","id":1,"method":"ping"}\n'


@dataclass
class ProbeResult:
    results: list[dict[str, Any]]
    stdin_left: str | None
    keyring_loaded_at_import: bool
    stdout: str
    stderr: str
    returncode: int
    elapsed_s: float

    def ok(self, index: int) -> Any:
        entry = self.results[index]
        assert "ok" in entry, f"op {index} failed: {entry}"
        return entry["ok"]

    def error(self, index: int) -> dict[str, Any]:
        entry = self.results[index]
        assert "error" in entry, f"op {index} succeeded: {entry}"
        error: dict[str, Any] = entry["error"]
        return error


def run_keystore(
    env: Mapping[str, str],
    ops: Sequence[Sequence[str | None]],
    *,
    extra_env: Mapping[str, str] | None = None,
    unset: Sequence[str] = (),
    stdin_text: str = PROBE_STDIN,
    timeout: float = 30.0,
) -> ProbeResult:
    """Run `ops` on a fresh KeyringStore/KeyResolver in a subprocess with `env`.

    ops: ("get", account) ("set", account, secret) ("delete", account) ("describe",)
         ("resolve", provider, env_var) ("describe_source", provider, env_var)
    stdin gets `stdin_text` (a protocol line); the probe reports what was left of it unread.
    """
    full = dict(env)
    full.update(extra_env or {})
    for name in unset:
        full.pop(name, None)
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full.get("PYTHONPATH")]))
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "tests.keychain", "probe", json.dumps(list(map(list, ops)))],
        env=full,
        cwd=REPO,
        input=stdin_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.monotonic() - started
    if r.returncode != 0:
        raise AssertionError(f"probe failed ({r.returncode}):\nstdout: {r.stdout}\nstderr: {r.stderr}")
    data = json.loads(r.stdout)
    return ProbeResult(
        results=data["results"],
        stdin_left=data["stdin_left"],
        keyring_loaded_at_import=data["keyring_loaded_at_import"],
        stdout=r.stdout,
        stderr=r.stderr,
        returncode=r.returncode,
        elapsed_s=elapsed,
    )


def _probe(ops: list[list[str | None]]) -> int:
    import anyio

    from sidecar.errors import SidecarError
    from sidecar.infra import keystore

    loaded_at_import = "keyring" in sys.modules

    async def main() -> list[dict[str, Any]]:
        store = keystore.KeyringStore()
        resolver = keystore.KeyResolver(store)
        results: list[dict[str, Any]] = []
        for op in ops:
            name, args = op[0], op[1:]
            t0 = time.perf_counter()
            try:
                value: Any
                if name == "get":
                    value = await store.get(str(args[0]))
                elif name == "set":
                    await store.set(str(args[0]), str(args[1]))
                    value = None
                elif name == "delete":
                    value = await store.delete(str(args[0]))
                elif name == "describe":
                    value = await store.describe()
                elif name == "resolve":
                    key = await resolver.resolve(str(args[0]), args[1])
                    value = {"value": key.value, "source": key.source}
                elif name == "describe_source":
                    value = list(await resolver.describe_source(str(args[0]), args[1]))
                else:
                    raise ValueError(f"unknown op {name!r}")
                entry: dict[str, Any] = {"ok": value}
            except SidecarError as err:
                entry = {
                    "error": {
                        "kind": err.kind,
                        "message": err.message,
                        "provider": err.provider,
                        "details": err.details,
                    }
                }
            entry["ms"] = round((time.perf_counter() - t0) * 1000, 1)
            results.append(entry)
        return results

    results = anyio.run(main)
    # What is left on stdin: a store must never read it (it carries the protocol).
    left = sys.stdin.read() if not sys.stdin.isatty() else None
    out = {"results": results, "stdin_left": left, "keyring_loaded_at_import": loaded_at_import}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        sys.exit(_probe(json.loads(sys.argv[2])))
    sys.stderr.write("usage: python -m tests.keychain probe '<json list of ops>'\n")
    sys.exit(2)
