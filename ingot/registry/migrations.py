"""Versioned schema: an ordered list of migrations, applied in one transaction on open.

Each migration is frozen in time: it spells out its own DDL instead of reading the ORM classes,
so changing `schema.py` later never changes what an old migration does. To change the schema,
append a migration here and update `schema.py` to match (a test checks they agree).

The machinery (`SchemaHistory`, `migrate`, `schema_version`) is shared: other table families
that may live in the same database (the inference log, `ingot.inference_log.migrations`) are a
`SchemaHistory` with their own version table, so each family is versioned independently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ingot.errors import ConfigError
from ingot.registry.schema import json_type, utc_now

# Any constant: PostgreSQL advisory lock key that serializes concurrent first opens.
_MIGRATION_LOCK_KEY = 0x1D_907_2E61


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    """models, model_versions, stage_events and the schema_version bookkeeping table."""
    metadata = MetaData()
    Table(
        "schema_version", metadata,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("description", Text, nullable=False),
        Column("applied_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "models", metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(128), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("name", name="uq_models_name"),
    )
    Table(
        "model_versions", metadata,
        Column("id", Integer, primary_key=True),
        Column("model_id", Integer, ForeignKey("models.id", name="fk_model_versions_model"), nullable=False),
        Column("version", Integer, nullable=True),
        Column("status", String(16), nullable=False),
        Column("stage", String(16), nullable=True),
        Column("artifact_uri", Text, nullable=True),
        Column("model_sha256", String(64), nullable=True),
        Column("data_hash", String(128), nullable=True),
        Column("config", json_type(), nullable=False),
        Column("metrics", json_type(), nullable=False),
        Column("gate", json_type(), nullable=True),
        Column("pipeline_run_id", String(256), nullable=True),
        Column("registered_by", String(128), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
        CheckConstraint("status IN ('PENDING', 'READY', 'FAILED')", name="ck_model_versions_status"),
        CheckConstraint(
            "stage IS NULL OR stage IN ('candidate', 'challenger', 'champion', 'archived', 'rejected')",
            name="ck_model_versions_stage",
        ),
        CheckConstraint("version IS NULL OR version >= 1", name="ck_model_versions_version_positive"),
        # Only gate rejections go without a version number, and a published version has its artifact.
        CheckConstraint("version IS NOT NULL OR stage = 'rejected'", name="ck_model_versions_unnumbered_rejected"),
        CheckConstraint(
            "version IS NULL OR (artifact_uri IS NOT NULL AND model_sha256 IS NOT NULL)",
            name="ck_model_versions_artifact",
        ),
    )
    Table(
        "stage_events", metadata,
        Column("id", Integer, primary_key=True),
        Column("version_id", Integer, ForeignKey("model_versions.id", name="fk_stage_events_version"),
               nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("from_stage", String(16), nullable=True),
        Column("to_stage", String(16), nullable=False),
        Column("reason", Text, nullable=False),
        Column("actor", String(128), nullable=False),
        Index("ix_stage_events_version_id", "version_id"),
    )
    metadata.create_all(conn)


def _v2_verification_and_lookups(conn: Connection) -> None:
    """Why a version FAILED; lookups by pipeline run; database-enforced stage invariants.

    The partial unique indexes make the database, not only the code, guarantee at most one
    champion and one challenger per model, and one rejection per (model, pipeline run), so a
    retried or racing register step cannot create a second record.
    """
    for statement in (
        "ALTER TABLE model_versions ADD COLUMN status_reason TEXT",
        "CREATE INDEX ix_model_versions_pipeline_run_id ON model_versions (pipeline_run_id)",
        "CREATE INDEX ix_model_versions_model_stage ON model_versions (model_id, stage)",
        "CREATE UNIQUE INDEX uq_model_versions_one_champion ON model_versions (model_id) "
        "WHERE stage = 'champion'",
        "CREATE UNIQUE INDEX uq_model_versions_one_challenger ON model_versions (model_id) "
        "WHERE stage = 'challenger'",
        "CREATE UNIQUE INDEX uq_model_versions_rejection_per_run ON model_versions (model_id, pipeline_run_id) "
        "WHERE version IS NULL AND pipeline_run_id IS NOT NULL",
    ):
        conn.exec_driver_sql(statement)


def _v3_append_only_events(conn: Connection) -> None:
    """Make the database reject UPDATE and DELETE on stage_events (the audit trail)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            """
            CREATE FUNCTION ingot_stage_events_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION USING
                    MESSAGE = 'stage_events is append-only: ' || TG_OP || ' is not allowed',
                    ERRCODE = 'restrict_violation';
            END
            $$
            """
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER stage_events_append_only BEFORE UPDATE OR DELETE ON stage_events "
            "FOR EACH ROW EXECUTE FUNCTION ingot_stage_events_append_only()"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER stage_events_no_truncate BEFORE TRUNCATE ON stage_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION ingot_stage_events_append_only()"
        )
    elif conn.dialect.name == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER stage_events_no_{operation.lower()} BEFORE {operation} ON stage_events "
                f"BEGIN SELECT RAISE(ABORT, 'stage_events is append-only: {operation} is not allowed'); END"
            )
    else:  # pragma: no cover - from_url accepts only these two
        raise ConfigError(f"no append-only guard for database dialect {conn.dialect.name!r}")


def _v4_recent_records_index(conn: Connection) -> None:
    """List a model's records newest first without scanning other models' rows.

    Found by benchmarks/bench_registry.py: with two models of 10,000 versions each,
    `list_versions(name, limit=20)` walked the primary key backwards through the other model's
    rows (14 ms on PostgreSQL, 46 ms on SQLite) instead of reading 20 index entries.
    """
    conn.exec_driver_sql("CREATE INDEX ix_model_versions_model_recent ON model_versions (model_id, id)")


def _v5_rollouts(conn: Connection) -> None:
    """Rollouts (A/B tests ending in promotion or rollback), their transitions, controller leases.

    A transition row holds the statistics behind it and is written BEFORE the action it
    announces, so the history explains every routing change and a restarted controller knows
    what it was doing. The partial unique index allows one unfinished rollout per model; the
    lease table lets exactly one controller act on a model at a time.
    """
    metadata = MetaData()
    Table(
        "rollouts", metadata,
        Column("id", Integer, primary_key=True),
        Column("model", String(128), nullable=False),
        Column("experiment", String(128), nullable=False),
        Column("champion_version", Integer, nullable=False),
        Column("challenger_version", Integer, nullable=False),
        Column("state", String(16), nullable=False),
        Column("outcome", String(16), nullable=True),
        Column("steps", json_type(), nullable=False),
        Column("step_index", Integer, nullable=False),
        Column("step_started_at", DateTime(timezone=True), nullable=False),
        Column("policy", json_type(), nullable=False),
        Column("target", json_type(), nullable=False),
        Column("analysis", json_type(), nullable=False),
        Column("verdict", json_type(), nullable=True),
        Column("created_by", String(128), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True), nullable=True),
        UniqueConstraint("experiment", name="uq_rollouts_experiment"),
        CheckConstraint(
            "state IN ('pending', 'warming', 'analyzing', 'promoting', 'promoted', 'rolling_back', "
            "'rolled_back', 'inconclusive', 'aborted')",
            name="ck_rollouts_state",
        ),
        CheckConstraint("challenger_version <> champion_version", name="ck_rollouts_two_versions"),
        Index("ix_rollouts_model", "model", "id"),
    )
    Table(
        "rollout_transitions", metadata,
        Column("id", Integer, primary_key=True),
        Column("rollout_id", Integer, ForeignKey("rollouts.id", name="fk_rollout_transitions_rollout"),
               nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("from_state", String(16), nullable=True),
        Column("to_state", String(16), nullable=False),
        Column("weight", Integer, nullable=True),
        Column("reason", Text, nullable=False),
        Column("actor", String(128), nullable=False),
        Column("evidence", json_type(), nullable=False),
        Index("ix_rollout_transitions_rollout_id", "rollout_id", "id"),
    )
    Table(
        "rollout_leases", metadata,
        Column("name", String(160), primary_key=True),
        Column("holder", String(160), nullable=False),
        Column("acquired_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    )
    metadata.create_all(conn)
    conn.exec_driver_sql(
        "CREATE UNIQUE INDEX uq_rollouts_one_active ON rollouts (model) "
        "WHERE state NOT IN ('promoted', 'rolled_back', 'inconclusive', 'aborted')"
    )


def _v6_drift_triggers(conn: Connection) -> None:
    """The drift monitor's retraining triggers: when, why (reason and the window's statistics),
    which run, and its state. The partial unique index lets the database, not the monitor, hold
    "at most one triggered run in flight per model", so two racing monitors cannot both start one.
    """
    metadata = MetaData()
    Table(
        "drift_triggers", metadata,
        Column("id", Integer, primary_key=True),
        Column("model", String(128), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("reason", Text, nullable=False),
        Column("statistics", json_type(), nullable=False),
        Column("state", String(16), nullable=False),
        Column("backend", String(16), nullable=False),
        Column("run_id", String(256), nullable=True),
        Column("log_path", Text, nullable=True),
        Column("pid", Integer, nullable=True),
        Column("host", String(256), nullable=True),
        Column("finished_at", DateTime(timezone=True), nullable=True),
        Column("detail", Text, nullable=True),
        CheckConstraint("state IN ('starting', 'running', 'succeeded', 'failed')", name="ck_drift_triggers_state"),
        CheckConstraint("backend IN ('local', 'kfp')", name="ck_drift_triggers_backend"),
        Index("ix_drift_triggers_model_created", "model", "created_at"),
    )
    metadata.create_all(conn)
    conn.exec_driver_sql(
        "CREATE UNIQUE INDEX uq_drift_triggers_one_in_flight ON drift_triggers (model) "
        "WHERE state IN ('starting', 'running')"
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial: models, model_versions, stage_events", _v1_initial),
    Migration(2, "status_reason, pipeline-run and stage indexes, one champion/challenger per model",
              _v2_verification_and_lookups),
    Migration(3, "append-only stage_events enforced by the database", _v3_append_only_events),
    Migration(4, "index for a model's newest records", _v4_recent_records_index),
    Migration(5, "rollouts, rollout_transitions, rollout_leases", _v5_rollouts),
    Migration(6, "drift monitor triggers, one in flight per model", _v6_drift_triggers),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


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
        """The version table, same shape for every family (migration 1 of each creates it)."""
        return Table(
            self.version_table, MetaData(),
            Column("version", Integer, primary_key=True, autoincrement=False),
            Column("description", Text, nullable=False),
            Column("applied_at", DateTime(timezone=True), nullable=False),
        )


REGISTRY = SchemaHistory("registry", "schema_version", MIGRATIONS, _MIGRATION_LOCK_KEY)


def schema_version(conn: Connection, history: SchemaHistory = REGISTRY) -> int:
    """The version the database is at for `history`: 0 when its tables do not exist yet."""
    if not inspect(conn).has_table(history.version_table):
        return 0
    version = history.table().c.version
    found = conn.scalar(select(version).order_by(version.desc()).limit(1))
    return int(found or 0)


def migrate(engine: Engine, *, target: int | None = None, history: SchemaHistory = REGISTRY) -> list[int]:
    """Bring the database up to `target` (default: the latest) in ONE transaction; return the
    versions applied.

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
        versions = history.table()
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
                        f"and was rolled back, the schema stays at version {found}: {_first_line(err)}"
                    ) from err
                applied.append(migration.version)
    return applied


def _first_line(err: DBAPIError) -> str:
    return str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)
