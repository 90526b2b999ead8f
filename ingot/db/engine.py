"""Database URLs and engines: SQLite (a file, created with its directory, or memory) and
PostgreSQL through psycopg 3, set up the same way for every store.

The default database is the registry's (`$INGOT_REGISTRY_URL`, else `registry.db` under the
data directory); the inference log, rollouts and drift triggers live there unless told otherwise.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool

from ingot import settings
from ingot.errors import ConfigError


def default_url() -> str:
    """The database used when given none: `$INGOT_REGISTRY_URL`, else SQLite under data_dir()."""
    return os.environ.get(settings.REGISTRY_URL_ENV) or str(
        URL.create("sqlite", database=str(settings.data_dir() / "registry.db"))
    )


def normalize_url(url: str | None, *, what: str = "registry URL") -> URL:
    """Parse and check a database URL (None: `default_url()`); `postgresql://` and `postgres://`
    mean psycopg 3. `what` names the setting in error messages."""
    url = default_url() if url is None else url
    expected = "expected sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{what} {url!r} is not a database URL; {expected}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise ConfigError(
                f"{what} driver {parsed.drivername!r} is not supported; use postgresql+psycopg:// "
                "(or plain postgresql://, which means psycopg 3)"
            )
        if not parsed.database:
            raise ConfigError(f"{what} {parsed.render_as_string()!r} names no database; {expected}")
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ConfigError(f"{what} driver {parsed.drivername!r} is not supported; use sqlite:///PATH")
        return parsed
    raise ConfigError(f"{what} scheme {parsed.drivername!r} is not supported; {expected}")


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or str(url.database).startswith("file::memory:")


DEFAULT_BUSY_TIMEOUT_MS = 30_000  # SQLite: how long a writer waits for the lock (unless told otherwise)
BUSY_TIMEOUT_OPTION = "ingot_busy_timeout_ms"  # execution option: this transaction's SQLite lock wait


@dataclass(frozen=True)
class Timeouts:
    """How long a database may keep a caller waiting. PostgreSQL: `connect_s` (the connect
    timeout), `statement_ms` and `lock_ms` (the session's `statement_timeout` and `lock_timeout`;
    None leaves the server's setting). SQLite: `busy_ms`, the wait for the write lock, also set
    per transaction with the execution option BUSY_TIMEOUT_OPTION."""

    connect_s: float = 10.0
    statement_ms: int | None = None
    lock_ms: int | None = None
    busy_ms: int = DEFAULT_BUSY_TIMEOUT_MS

    def __post_init__(self) -> None:
        for name in ("connect_s", "statement_ms", "lock_ms", "busy_ms"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ConfigError(f"database timeout {name} must be 0 or more, got {value!r}")

    def postgresql_connect_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"connect_timeout": max(1, round(self.connect_s))}
        options = [f"-c {setting}={int(value)}" for setting, value in
                   (("statement_timeout", self.statement_ms), ("lock_timeout", self.lock_ms)) if value is not None]
        if options:
            args["options"] = " ".join(options)
        return args


def open_engine(url: URL, timeouts: Timeouts | None = None) -> Engine:
    """An engine set up for the stores' transactions on either backend.

    `engine.execution_options(ingot_write=True)` gives a writer's engine: on SQLite its
    transactions start with BEGIN IMMEDIATE. `timeouts` bound how long the database may keep a
    caller waiting (default: a 10 s connect timeout, a 30 s SQLite lock wait, the server's
    statement and lock timeouts).
    """
    timeouts = timeouts or Timeouts()
    if url.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, connect_args=timeouts.postgresql_connect_args())
    if _is_memory(url):
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(str(url.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": timeouts.busy_ms / 1000, "check_same_thread": False})
    file_backed = not _is_memory(url)
    default_busy_ms = int(timeouts.busy_ms)

    # pysqlite would otherwise skip BEGIN before DDL and SELECT (legacy transaction control);
    # emitting it ourselves makes migrations transactional and lets writers take the lock up front
    # (BEGIN IMMEDIATE), so two writers queue on busy_timeout instead of failing on lock upgrade.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {default_busy_ms}")
        record.info[BUSY_TIMEOUT_OPTION] = default_busy_ms
        if file_backed:
            _enter_wal(cursor)  # readers never block the writer
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        busy_ms = int(options.get(BUSY_TIMEOUT_OPTION, default_busy_ms))
        info = conn.connection.info  # per DBAPI connection: set the PRAGMA only when it changes
        if info.get(BUSY_TIMEOUT_OPTION) != busy_ms:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms}")
            info[BUSY_TIMEOUT_OPTION] = busy_ms
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("ingot_write") else "BEGIN")

    return engine


def _enter_wal(cursor: Any, wait_s: float = 30.0) -> None:
    """Switch the file to WAL (persistent: only a new file's first connections do the work).

    The switch needs the file to itself and SQLite answers "database is locked" at once instead
    of waiting on busy_timeout, so several processes opening a new database together would fail;
    retry for as long as a writer would wait."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def upsert_insert(dialect_name: str | Connection) -> Any:
    """The dialect's `insert` (with `on_conflict_do_nothing`) for a dialect name or connection."""
    name = dialect_name if isinstance(dialect_name, str) else dialect_name.dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


def is_unique_violation(err: IntegrityError) -> bool:
    code = getattr(err.orig, "sqlstate", None)
    return code == "23505" or "UNIQUE constraint failed" in str(err.orig)


def is_transient(err: DBAPIError) -> bool:
    """A lock or serialization failure that a retry can get past."""
    code = getattr(err.orig, "sqlstate", None)
    return code in ("40001", "40P01") or "database is locked" in str(err.orig)


def first_line(err: DBAPIError) -> str:
    """The driver's message without SQLAlchemy's statement dump, for error messages."""
    return str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)
