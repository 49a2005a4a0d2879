"""The real PostgreSQL and Redis the team-mode tests run against: they start on loopback in a
temporary directory, keep data across a restart on the same port, and a killed one comes back."""

from __future__ import annotations

from tests.conftest import ServerFactory
from tests.servers import PostgresServer, RedisServer, resp_command


def test_postgres_serves_sql_on_its_own_port(postgres_server: PostgresServer, postgres_url: str) -> None:
    assert postgres_server.port != 5432
    assert postgres_url.startswith(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/")
    database = postgres_url.rsplit("/", 1)[1]
    out = postgres_server.psql("SELECT current_setting('listen_addresses'), current_database()", database)
    assert out.strip() == f"127.0.0.1|{database}"


def test_postgres_restart_keeps_data_and_port(server_factory: ServerFactory) -> None:
    server = server_factory.postgres(durable=True)
    server.psql("CREATE TABLE kept (n integer); INSERT INTO kept VALUES (41), (1)")
    port, first_pid = server.port, server.pid
    server.restart()
    assert server.port == port and server.pid != first_pid
    assert server.psql("SELECT sum(n) FROM kept").strip() == "42"
    server.kill()
    assert server.pid is None
    server.start()  # crash recovery on the same directory
    assert server.psql("SELECT sum(n) FROM kept").strip() == "42"


def test_redis_answers_and_restarts_with_its_append_only_file(
    redis_server: RedisServer, server_factory: ServerFactory
) -> None:
    assert resp_command(redis_server.port, "PING") == b"+PONG"
    own = server_factory.redis(appendonly=True)
    assert resp_command(own.port, "SET", "k", "v") == b"+OK"
    own.restart()
    assert resp_command(own.port, "EXISTS", "k") == b":1"
    own.stop()
    assert own.pid is None
