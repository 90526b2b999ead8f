"""The drift-trigger store's schema history (version table `drift_trigger_schema_version`), run
by `ingot.db.migrate` when a `TriggerStore` opens.

Until this history existed the registry's migration 6 made the table, so migration 1 here
creates the table and its indexes only when absent: it adopts a table an older registry made,
rows and all, and creates it on a fresh database. Frozen DDL; to change the table append a
migration here and update `triggers.py`'s mapping to match.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, DateTime, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Connection

from ingot.db import Migration, SchemaHistory, json_type


def _v1_drift_triggers(conn: Connection) -> None:
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
    metadata.create_all(conn, checkfirst=True)
    conn.exec_driver_sql(
        "CREATE UNIQUE INDEX IF NOT EXISTS uq_drift_triggers_one_in_flight ON drift_triggers (model) "
        "WHERE state IN ('starting', 'running')"
    )


def _v2_what_the_run_produced(conn: Connection) -> None:
    """What a finished run registered: its pipeline run id (the id its registry records carry,
    which for a local run is not the trigger's run id), the registry record and the version (NULL
    for a rejection). The rollout controller links a candidate to its trigger through them."""
    for column in ("pipeline_run_id VARCHAR(256)", "record_id INTEGER", "version INTEGER"):
        conn.exec_driver_sql(f"ALTER TABLE drift_triggers ADD COLUMN {column}")
    conn.exec_driver_sql("CREATE INDEX ix_drift_triggers_pipeline_run_id ON drift_triggers (pipeline_run_id)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "drift_triggers, one in flight per model (adopted when registry migration 6 made it)",
              _v1_drift_triggers),
    Migration(2, "drift_triggers.pipeline_run_id, record_id, version: what a finished run registered",
              _v2_what_the_run_produced),
)
HISTORY = SchemaHistory("drift trigger", "drift_trigger_schema_version", MIGRATIONS, 0x1D_907_7216)
SCHEMA_VERSION = HISTORY.latest
