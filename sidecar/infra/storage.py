"""Which storage engine a configuration names: the state directory's SQLite database, or
PostgreSQL at `[storage] url` / `SIDECAR_DATABASE_URL` (the environment wins, so a container can
be pointed at its database without a config file).

The only place, with `infra.coordination.open_coordinator`, that chooses an engine; services get
an `infra.sql.SqlEngine` (and, later, the component stores built on it) and never ask which.

Must not know: what the components store, the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from sidecar.config import ConfigError, Storage
from sidecar.infra.db import Database
from sidecar.infra.sql import SqlEngine, SqliteEngine

if TYPE_CHECKING:
    from sidecar.infra.pg import PgBlocking

DATABASE_URL_ENV: Final = "SIDECAR_DATABASE_URL"
POSTGRES_SCHEMES: Final = frozenset({"postgresql", "postgres"})


def database_url(settings: Storage, env: Mapping[str, str]) -> str | None:
    """The PostgreSQL URL in use, or None for SQLite; a URL of another kind is a config error."""
    url = env.get(DATABASE_URL_ENV) or settings.url
    if not url:
        return None
    scheme = urlsplit(url).scheme
    if scheme not in POSTGRES_SCHEMES:
        where = DATABASE_URL_ENV if env.get(DATABASE_URL_ENV) else "[storage] url"
        raise ConfigError(f"{where} must be a postgresql:// URL (got scheme {scheme!r})")
    return url


def open_engine(settings: Storage, env: Mapping[str, str], sqlite: Database) -> SqlEngine:
    """The engine to use: `PgEngine` for a PostgreSQL URL (psycopg is imported only then), else
    `SqliteEngine` over `sqlite`, the state database the rest of the process already uses."""
    url = database_url(settings, env)
    if url is None:
        return SqliteEngine(sqlite)
    from sidecar.infra.pg import PgEngine

    return PgEngine(
        url,
        min_size=settings.pool_min,
        max_size=max(settings.pool_max, settings.pool_min, 1),
        connect_timeout_s=settings.connect_timeout_s,
        pool_wait_s=settings.pool_wait_s,
    )


def open_blocking(settings: Storage, env: Mapping[str, str], sqlite: Database) -> Database | PgBlocking:
    """The database of code that runs on threads (the ledger's writer and its queries): `sqlite`
    itself, or a small blocking pool on the configured PostgreSQL."""
    url = database_url(settings, env)
    if url is None:
        return sqlite
    from sidecar.infra.pg import PgBlocking

    return PgBlocking(url, connect_timeout_s=settings.connect_timeout_s, pool_wait_s=settings.pool_wait_s)
