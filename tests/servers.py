"""Real PostgreSQL and Redis servers for tests, each in a temporary directory on a free loopback port.

`PostgresServer.start()` runs `initdb` then `postgres` itself (from Debian's
`/usr/lib/postgresql/<version>/bin`, the newest installed) with its data directory and its unix
socket directory under a fresh temporary directory, listening on 127.0.0.1 only, trust auth for
the `postgres` role. PostgreSQL refuses to run as root: when the tests run as root it runs as the
`postgres` system user (created by the Debian package) through `setpriv`, which execs, so the PID
we hold is the postmaster's own. The system cluster the package may have created (port 5432,
`/var/lib/postgresql`) is never touched or used: nothing here reads PGHOST/PGPORT or
`pg_wrapper`'s defaults.

`RedisServer.start()` runs `redis-server` the same way (no config file, persistence off unless
`appendonly=True`, which a restart test uses to keep counters across a restart).

Both have `stop()` (graceful, then harder, each wait bounded), `restart()` (stop and start again on
the same port and data directory: for "restarted mid-load" tests), `kill()` (SIGKILL, no
shutdown: a crash) and `close()` (stop and remove the directory). A missing tool raises
`ServerError` with the apt packages to install; the fixtures in conftest turn that into a failure,
never a skip (scripts/test installs them).

Nothing here imports psycopg or redis: readiness is checked with `pg_isready` and a raw RESP PING,
so the helpers work before the drivers are installed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Final

PG_INSTALL_HINT: Final = (
    "the PostgreSQL tests need a real server: apt-get install -y --no-install-recommends postgresql "
    "(scripts/test installs it)"
)
REDIS_INSTALL_HINT: Final = (
    "the Redis tests need a real server: apt-get install -y --no-install-recommends redis-server "
    "(scripts/test installs it)"
)
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 15.0
PG_USER: Final = "postgres"
PG_SYSTEM_USER: Final = "postgres"


class ServerError(RuntimeError):
    """A test server could not be found, started or stopped."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _end(proc: subprocess.Popen[bytes], first: signal.Signals, timeout: float) -> None:
    """Send `first`, wait up to `timeout`; then SIGKILL and wait (bounded) for the process to go."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(first)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"process {proc.pid} did not exit after SIGKILL") from exc


# --- PostgreSQL -----------------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The newest `/usr/lib/postgresql/<version>/bin` holding initdb and postgres (Debian's layout),
    else the directory of `initdb` on PATH."""
    candidates: list[tuple[int, Path]] = []
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        for child in base.iterdir():
            if child.name.isdigit() and (child / "bin" / "initdb").exists():
                candidates.append((int(child.name), child / "bin"))
    if candidates:
        return max(candidates)[1]
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "postgres").exists():
        return Path(found).resolve().parent
    raise ServerError(f"initdb/postgres not found: {PG_INSTALL_HINT}")


class PostgresServer:
    """One private PostgreSQL cluster (see the module doc)."""

    def __init__(self, *, durable: bool = False, max_connections: int = 200) -> None:
        self.bin = postgres_bin_dir()
        self.durable = durable
        self.max_connections = max_connections
        self.root = Path(tempfile.mkdtemp(prefix="sidecar-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(PG_SYSTEM_USER)
            except KeyError:
                raise ServerError(
                    f"running as root and no {PG_SYSTEM_USER!r} user to run PostgreSQL as: {PG_INSTALL_HINT}"
                ) from None
            if shutil.which("setpriv") is None:
                raise ServerError("setpriv (util-linux) is needed to run PostgreSQL as a non-root user")
            self._as = [
                "setpriv",
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--init-groups",
                "--",
            ]
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.sockets.mkdir()
        if self._as:
            os.chown(self.sockets, pwd.getpwnam(PG_SYSTEM_USER).pw_uid, pwd.getpwnam(PG_SYSTEM_USER).pw_gid)

    # -- addresses -------------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    # -- life cycle ------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env["LANG"] = "C"
        return env

    def _initdb(self) -> None:
        cmd = [
            *self._as, str(self.bin / "initdb"), "-D", str(self.data), "-U", PG_USER, "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, env=self._env(), timeout=START_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            raise ServerError(
                f"initdb failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}"
            )

    def start(self) -> PostgresServer:
        if self.pid is not None:
            return self
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.sockets),
            "max_connections": str(self.max_connections),
            "shared_buffers": "32MB",
            # Containers often have a tiny /dev/shm; mmap works everywhere.
            "dynamic_shared_memory_type": "mmap",
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        args = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the server's life
        self.proc = subprocess.Popen(
            [*self._as, str(self.bin / "postgres"), "-D", str(self.data), *args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._env(),
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        isready = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"postgres exited with {self.proc.returncode} while starting:\n{_tail(self.log_path)}"
                )
            if _port_open(self.port):
                done = subprocess.run(isready, env=self._env(), timeout=10, check=False)
                if done.returncode == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"postgres not ready within {START_TIMEOUT_S:.0f} s:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are ended, committed data kept), bounded; SIGKILL after."""
        if self.proc is not None:
            _end(self.proc, signal.SIGINT, STOP_TIMEOUT_S)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """A crash: SIGKILL the postmaster, then end its orphaned children (immediate shutdown)."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(STOP_TIMEOUT_S)
        # The backends are in the postmaster's session (start_new_session) and exit on their own
        # once they notice it is gone; hurry them so the port and data directory are free.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.proc = None
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` with psql (ON_ERROR_STOP); returns its unaligned, tuples-only output."""
        cmd = [
            str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d", database, "-c", sql,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, env=self._env(), timeout=60, check=False)
        if proc.returncode != 0:
            raise ServerError(f"psql failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode()

    def create_database(self, name: str) -> str:
        """Create database `name` (letters, digits, underscores) and return its URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"not a plain database name: {name!r}")
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)


# --- Redis ----------------------------------------------------------------------------------------


def redis_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise ServerError(f"redis-server not found: {REDIS_INSTALL_HINT}")
    return found


def resp_command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command in RESP and return the first reply line (e.g. b'+PONG')."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


class RedisServer:
    """One private Redis (see the module doc)."""

    def __init__(self, *, appendonly: bool = False) -> None:
        self.binary = redis_binary()
        self.appendonly = appendonly
        self.root = Path(tempfile.mkdtemp(prefix="sidecar-redis-"))
        self.log_path = self.root / "redis.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> RedisServer:
        if self.pid is not None:
            return self
        cmd = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
            "--daemonize", "no", "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always", "--databases", "64", "--loglevel", "warning",
        ]  # fmt: skip
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the server's life
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"redis-server exited with {self.proc.returncode} while starting:\n{_tail(self.log_path)}"
                )
            with contextlib.suppress(OSError):
                if resp_command(self.port, "PING") == b"+PONG":
                    return self
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"redis-server not ready within {START_TIMEOUT_S:.0f} s:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        """SIGTERM (Redis writes its append-only file and exits), bounded; SIGKILL after."""
        if self.proc is not None:
            _end(self.proc, signal.SIGTERM, STOP_TIMEOUT_S)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        if self.proc is not None:
            _end(self.proc, signal.SIGKILL, STOP_TIMEOUT_S)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def flush(self) -> None:
        if resp_command(self.port, "FLUSHALL") != b"+OK":
            raise ServerError("FLUSHALL failed")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
