"""The one migration runner: a store's schema is an ordered list of migrations (its
`SchemaHistory`), applied in one transaction when the store opens.

Each history records what it applied in a version table of its own, and on PostgreSQL takes an
advisory lock of its own while migrating, so several stores can share one database, each at its
own version, and concurrent first opens of one store queue instead of racing. Migrations are
frozen in time: each spells out its own DDL instead of reading the current table mappings, so
changing a mapping later never changes what an old migration does. To change a schema, append a
migration to its history and update the mapping to match (each store's tests compare the two).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, insert, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ingot.db.engine import first_line
from ingot.db.types import utc_now
from ingot.errors import ConfigError


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def noop(_conn: Connection) -> None:
    """A step that changes nothing: keeps a version number whose work moved elsewhere."""


@dataclass(frozen=True)
class SchemaHistory:
    """One family of tables versioned together: its migrations and the table recording them."""

    name: str  # for messages: "registry schema is version 7, ..."
    version_table: str
    migrations: tuple[Migration, ...]
    lock_key: int  # PostgreSQL advisory lock key serializing concurrent first opens

    @property
    def latest(self) -> int:
        return self.migrations[-1].version

    def table(self) -> Table:
        """The version table, same shape for every history; the runner creates it when absent."""
        return Table(
            self.version_table, MetaData(),
            Column("version", Integer, primary_key=True, autoincrement=False),
            Column("description", Text, nullable=False),
            Column("applied_at", DateTime(timezone=True), nullable=False),
        )


def schema_version(conn: Connection, history: SchemaHistory) -> int:
    """The version the database is at for `history`: 0 when its tables do not exist yet."""
    if not inspect(conn).has_table(history.version_table):
        return 0
    version = history.table().c.version
    found = conn.scalar(select(version).order_by(version.desc()).limit(1))
    return int(found or 0)


def migrate(engine: Engine, history: SchemaHistory, *, target: int | None = None) -> list[int]:
    """Bring the database up to `target` (default: the latest) of `history` in ONE transaction;
    return the versions applied.

    A failing migration rolls everything back, leaving the database at its old version. A
    database newer than this code is refused rather than guessed at.
    """
    newest = history.latest
    target = newest if target is None else target
    applied: list[int] = []
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": history.lock_key})
        found = schema_version(conn, history)
        if found > newest:
            raise ConfigError(
                f"{history.name} schema is version {found}, newer than this ingot understands "
                f"(up to {newest}); upgrade ingot to use this database"
            )
        if found >= target:
            return applied
        versions = history.table()
        versions.create(conn, checkfirst=True)
        for migration in history.migrations:
            if found < migration.version <= target:
                try:
                    migration.apply(conn)
                    conn.execute(
                        insert(versions).values(
                            version=migration.version, description=migration.description,
                            applied_at=utc_now(),
                        )
                    )
                except DBAPIError as err:
                    raise ConfigError(
                        f"{history.name} schema migration {migration.version} ({migration.description}) failed "
                        f"and was rolled back, the schema stays at version {found}: {first_line(err)}"
                    ) from err
                applied.append(migration.version)
    return applied
