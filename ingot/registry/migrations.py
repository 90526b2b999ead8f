"""Versioned schema: an ordered list of migrations, applied in one transaction on open.

Each migration is frozen in time: it spells out its own DDL instead of reading the ORM classes,
so changing `schema.py` later never changes what an old migration does. To change the schema,
append a migration here and update `schema.py` to match (a test checks they agree).

The runner is `ingot.db.migrate`; this is the registry's `SchemaHistory` (version table
`schema_version`). Versions 5 and 6 once created the rollout and drift-trigger tables in this
history; those tables now belong to their own stores' histories, so 5 and 6 stay recorded as
no-op steps: a database at version 6 is current, and one at 4 moves to 6 without DDL. The
rollout and trigger histories create their tables only when absent, adopting the ones an older
registry made, so no row moves and nothing is lost.
"""

from __future__ import annotations

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
)
from sqlalchemy.engine import Connection

from ingot.db import Migration, SchemaHistory, json_type
from ingot.db.migrations import noop
from ingot.errors import ConfigError


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


def _v7_dataset_versions(conn: Connection) -> None:
    """Dataset versions (a Dataset artifact built from a base dataset and labelled production rows)
    and each model version's link to the one it trained on (NULL: not recorded)."""
    metadata = MetaData()
    Table(
        "dataset_versions", metadata,
        Column("id", Integer, primary_key=True),
        Column("model", String(128), nullable=False),
        Column("content_hash", String(128), nullable=False),
        Column("uri", Text, nullable=False),
        Column("parent_hash", String(128), nullable=True),
        Column("window_start", DateTime(timezone=True), nullable=True),
        Column("window_end", DateTime(timezone=True), nullable=True),
        Column("counts", json_type(), nullable=False),
        Column("sources", json_type(), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("model", "content_hash", name="uq_dataset_versions_model_hash"),
    )
    metadata.create_all(conn)
    conn.exec_driver_sql("ALTER TABLE model_versions ADD COLUMN dataset_version_id INTEGER "
                         "REFERENCES dataset_versions (id)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial: models, model_versions, stage_events", _v1_initial),
    Migration(2, "status_reason, pipeline-run and stage indexes, one champion/challenger per model",
              _v2_verification_and_lookups),
    Migration(3, "append-only stage_events enforced by the database", _v3_append_only_events),
    Migration(4, "index for a model's newest records", _v4_recent_records_index),
    # 5 and 6 made the rollout and drift-trigger tables, which now have histories of their own
    # (ingot/rollout/migrations.py, ingot/monitor/trigger_migrations.py) that adopt tables made here.
    Migration(5, "no-op: rollout tables moved to the rollout schema history", noop),
    Migration(6, "no-op: drift_triggers moved to the drift trigger schema history", noop),
    Migration(7, "dataset_versions, model_versions.dataset_version_id", _v7_dataset_versions),
)
REGISTRY = SchemaHistory("registry", "schema_version", MIGRATIONS, 0x1D_907_2E61)
SCHEMA_VERSION = REGISTRY.latest


