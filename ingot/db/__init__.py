"""The database floor every store stands on: URL handling and engines for SQLite and PostgreSQL
(`engine`), the column types they share (`types`) and one migration runner (`migrations`).

Each store above it (the registry, the inference log, rollouts, drift triggers) declares its own
tables and its own `SchemaHistory`: a version table of its own and a lock key of its own, so
the stores can share one database (the default) or live apart, and each migrates on open
without knowing about the others.
"""

from ingot.db.engine import (
    BUSY_TIMEOUT_OPTION,
    Timeouts,
    default_url,
    first_line,
    is_transient,
    is_unique_violation,
    normalize_url,
    open_engine,
    upsert_insert,
)
from ingot.db.migrations import Migration, SchemaHistory, migrate, schema_version
from ingot.db.types import Base, UTCDateTime, json_type, utc_now

__all__ = [
    "BUSY_TIMEOUT_OPTION",
    "Base",
    "Migration",
    "SchemaHistory",
    "Timeouts",
    "UTCDateTime",
    "default_url",
    "first_line",
    "is_transient",
    "is_unique_violation",
    "json_type",
    "migrate",
    "normalize_url",
    "open_engine",
    "schema_version",
    "upsert_insert",
    "utc_now",
]
