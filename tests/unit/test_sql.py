"""Engine-neutral SQL: `?` placeholders become psycopg's `%s` and a literal `%` is doubled, while
quoted text, quoted names, comments and dollar-quoted bodies keep their `?` and `%` as written."""

from __future__ import annotations

import pytest

from sidecar.infra.sql import Dialects, text_for, to_postgres


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = %s AND c = %s"),
        ("SELECT '?', 'it''s ?' , ?", "SELECT '?', 'it''s ?' , %s"),
        (
            "SELECT \"odd?name\" FROM t WHERE x LIKE 'a%' AND y = ?",
            "SELECT \"odd?name\" FROM t WHERE x LIKE 'a%%' AND y = %s",
        ),
        ("SELECT 5 % 2, ?", "SELECT 5 %% 2, %s"),
        ("SELECT 1 -- why? 100%\n, ?", "SELECT 1 -- why? 100%%\n, %s"),
        ("SELECT /* ? */ ?", "SELECT /* ? */ %s"),
        (
            "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1 WHERE '?' = '?' $body$ LANGUAGE sql",
            "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1 WHERE '?' = '?' $body$ LANGUAGE sql",
        ),
        ("DO $$ BEGIN PERFORM 1; END $$", "DO $$ BEGIN PERFORM 1; END $$"),
        (
            "INSERT INTO t VALUES (?, ?) ON CONFLICT (a) DO UPDATE SET b = excluded.b",
            "INSERT INTO t VALUES (%s, %s) ON CONFLICT (a) DO UPDATE SET b = excluded.b",
        ),
    ],
)
def test_placeholders_are_translated_outside_quotes_and_comments(sqlite: str, postgres: str) -> None:
    assert to_postgres(sqlite) == postgres


def test_dialects_give_each_engine_its_own_text() -> None:
    pair = Dialects(
        sqlite="id INTEGER PRIMARY KEY", postgres="id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    )
    assert text_for(pair, "sqlite") == "id INTEGER PRIMARY KEY"
    assert text_for(pair, "postgresql").startswith("id BIGINT")
    assert text_for("shared", "postgresql") == "shared"
