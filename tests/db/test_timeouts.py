"""How long a database may keep a caller waiting: PostgreSQL sessions get the statement and lock
timeouts they are given, and on SQLite a transaction can shorten its wait for the write lock (the
gateway's feedback does), while other writers keep the long default."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from ingot.db import BUSY_TIMEOUT_OPTION, Timeouts, normalize_url, open_engine
from ingot.errors import ConfigError
from tests.support.databases import backends, database_factory


@pytest.fixture(params=[backends("registry-postgres")[1]])  # PostgreSQL only: SQLite has no such settings
def postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_factory(request, tmp_path, "timeouts") as make:
        yield make()


def test_postgresql_sessions_get_the_statement_and_lock_timeouts(postgres_url: str) -> None:
    engine = open_engine(normalize_url(postgres_url), Timeouts(connect_s=3, statement_ms=300, lock_ms=150))
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SHOW statement_timeout")) == "300ms"
            assert conn.scalar(text("SHOW lock_timeout")) == "150ms"
            with pytest.raises(OperationalError, match="statement timeout"):
                conn.execute(text("SELECT pg_sleep(5)"))
    finally:
        engine.dispose()
    plain = open_engine(normalize_url(postgres_url))  # by default the server's settings stand
    try:
        with plain.connect() as conn:
            assert conn.scalar(text("SHOW statement_timeout")) == "0"
    finally:
        plain.dispose()


def test_a_sqlite_transaction_can_shorten_its_wait_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    engine = open_engine(normalize_url(f"sqlite:///{path}"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        short = engine.execution_options(ingot_write=True, **{BUSY_TIMEOUT_OPTION: 200})
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"):
            with short.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (1)"))
        assert time.monotonic() - started < 10  # not the 30 s every other writer waits
        with engine.connect() as conn:  # the pooled connection is back at the default for the others
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()


def test_negative_timeouts_are_refused() -> None:
    with pytest.raises(ConfigError, match="statement_ms must be 0 or more"):
        Timeouts(statement_ms=-1)
