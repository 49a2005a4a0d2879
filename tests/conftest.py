"""Shared pytest fixtures.

Keychain: private, isolated Secret Services (see tests/keychain.py). They are session-scoped and
shared: a test that stores something in `secret_service_env` must delete it again, and must copy
the env dict before changing it. Missing tools are a failure, not a skip: scripts/test installs them.

PostgreSQL and Redis: real servers from Debian's packages (see tests/servers.py), each started the
first time a test asks for it and stopped at the end of the session.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from tests.keychain import INSTALL_HINT, SecretService, State, missing_tools, start_secret_service
from tests.servers import PostgresServer, RedisServer, ServerError

if TYPE_CHECKING:
    from sidecar.infra.sql import SqlEngine
    from tests.fakes.openai_compat import FakeOpenAICompat

_Server = TypeVar("_Server", PostgresServer, RedisServer)


def _service(state: State) -> Iterator[SecretService]:
    missing = missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: {INSTALL_HINT}", pytrace=False)
    service = start_secret_service(state)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def secret_service() -> Iterator[SecretService]:
    """A working, unlocked Secret Service (gnome-keyring) on a private bus."""
    yield from _service("unlocked")


@pytest.fixture(scope="session")
def secret_service_env(secret_service: SecretService) -> dict[str, str]:
    """The environment to run a process against `secret_service` (DBUS_SESSION_BUS_ADDRESS, HOME,
    XDG_*). Shared by the session: copy it before changing it."""
    return secret_service.env


@pytest.fixture(scope="session")
def locked_secret_service() -> Iterator[SecretService]:
    """A Secret Service whose login keyring exists but stays locked (keyring's KeyringLocked)."""
    yield from _service("locked")


@pytest.fixture(scope="session")
def uninitialised_secret_service() -> Iterator[SecretService]:
    """A bus where gnome-keyring is only D-Bus-activatable and has no login keyring: the first use
    needs a prompt that cannot be shown (keyring's InitError, "Prompt dismissed")."""
    yield from _service("uninitialised")


@pytest.fixture(scope="session")
def no_secret_service_env() -> Iterator[dict[str, str]]:
    """A session bus on which nothing provides or can activate org.freedesktop.secrets
    (keyring's fail backend, NoKeyringError)."""
    for service in _service("absent"):
        yield service.env


# --- real PostgreSQL and Redis (tests/servers.py) ------------------------------------------------


def _started(make: Callable[[], _Server]) -> _Server:
    try:
        return make()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL on a free loopback port, started on first use, stopped at the end.
    Shared by the session: a test that needs a clean schema takes `postgres_url` instead; one that
    restarts or kills a server starts its own (`server_factory`)."""
    server = _started(lambda: PostgresServer().start())
    try:
        yield server
    finally:
        server.close()


_databases = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the shared server, for one test."""
    return postgres_server.create_database(f"t{os.getpid()}_{next(_databases)}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private Redis on a free loopback port, started on first use, stopped at the end."""
    server = _started(lambda: RedisServer().start())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The shared Redis, emptied before the test (tests run one at a time)."""
    redis_server.flush()
    yield redis_server.url()


class ServerFactory:
    """Servers of a test's own, for tests that stop, restart or kill them; closed after the test."""

    def __init__(self) -> None:
        self.servers: list[PostgresServer | RedisServer] = []

    def postgres(self, **kwargs: Any) -> PostgresServer:
        server = _started(lambda: PostgresServer(**kwargs).start())
        self.servers.append(server)
        return server

    def redis(self, **kwargs: Any) -> RedisServer:
        server = _started(lambda: RedisServer(**kwargs).start())
        self.servers.append(server)
        return server


@pytest.fixture
def server_factory() -> Iterator[ServerFactory]:
    factory = ServerFactory()
    try:
        yield factory
    finally:
        for server in factory.servers:
            server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SqlEngine]:
    """Makes the storage seam's statement layer on each engine in turn: on a fresh SQLite file,
    then on a fresh database of the shared PostgreSQL. A store written against `SqlEngine` is
    tested once, with this, for both. Call it inside the test's event loop (psycopg's pool belongs
    to the loop that opened it) and `aclose` the engine there."""
    from sidecar.infra.db import Database
    from sidecar.infra.sql import SqliteEngine

    if request.param == "sqlite":
        return lambda: SqliteEngine(Database(tmp_path / "sidecar.db"))
    url = request.getfixturevalue("postgres_url")

    def postgres() -> SqlEngine:
        from sidecar.infra.pg import PgEngine

        return PgEngine(url)

    return postgres


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Every `@pytest.mark.anyio` test runs on asyncio, the loop the sidecar runs on."""
    return "asyncio"


@pytest.fixture
def openai() -> Iterator[FakeOpenAICompat]:
    """A fake OpenAI on 127.0.0.1 for one test; a module that needs another one defines its own."""
    from tests.fakes.openai_compat import FakeOpenAICompat

    with FakeOpenAICompat("openai") as fake:
        yield fake
