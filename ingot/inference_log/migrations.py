"""The inference log's schema history, versioned apart from the registry's.

The log usually lives in the registry's database, so it keeps its own version table
(`inference_log_schema_version`) and lock key, run by the one runner, `ingot.db.migrate`. Migrations are frozen DDL, like the registry's: to change
the log, append one here and update `schema.py` to match (a test compares the two).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.engine import Connection

from ingot.db import Migration, SchemaHistory

VERSION_TABLE = "inference_log_schema_version"
_LOCK_KEY = 0x1D_907_1060  # any constant other than the registry's


def _v1_initial(conn: Connection) -> None:
    """inference_log and feedback_labels (the runner makes the version table)."""
    metadata = MetaData()
    big_pk = BigInteger().with_variant(Integer, "sqlite")
    Table(
        "inference_log", metadata,
        Column("id", big_pk, primary_key=True),
        Column("request_id", String(64), nullable=False),
        Column("row", Integer, nullable=False),
        Column("ts", DateTime(timezone=True), nullable=False),
        Column("model", String(128), nullable=False),
        Column("experiment", String(128), nullable=True),
        Column("variant", String(16), nullable=False),
        Column("assignment", String(16), nullable=False),
        Column("model_version", Integer, nullable=True),
        Column("signature", String(128), nullable=False),
        Column("input_sha256", String(64), nullable=True),
        Column("predicted_class_id", Integer, nullable=True),
        Column("predicted_class_name", String(128), nullable=True),
        Column("confidence", Float, nullable=True),
        Column("input_mean", Float, nullable=True),
        Column("input_std", Float, nullable=True),
        Column("latency_ms", Float, nullable=False),
        Column("status", String(32), nullable=False),
        UniqueConstraint("request_id", "row", "variant", name="uq_inference_log_request_row_variant"),
        Index("ix_inference_log_model_experiment_variant", "model", "experiment", "variant"),
        Index("ix_inference_log_model_ts", "model", "ts"),
    )
    Table(
        "feedback_labels", metadata,
        Column("id", big_pk, primary_key=True),
        Column("request_id", String(64), nullable=False),
        Column("row", Integer, nullable=False),
        Column("label_id", Integer, nullable=False),
        Column("label_name", String(128), nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False),
        Column("model", String(128), nullable=False),
        Column("experiment", String(128), nullable=True),
        Column("variant", String(16), nullable=False),
        Column("model_version", Integer, nullable=True),
        Column("correct", Boolean, nullable=False),
        UniqueConstraint("request_id", "row", name="uq_feedback_labels_request_row"),
        Index("ix_feedback_labels_model_experiment_variant", "model", "experiment", "variant"),
    )
    metadata.create_all(conn)


def _v_cache_degraded(conn: Connection) -> None:
    """cache_hit (the answer came from the gateway's prediction cache) and degraded (why the answer
    is not the assigned model's own, NULL when it is); existing rows are neither."""
    conn.exec_driver_sql("ALTER TABLE inference_log ADD COLUMN cache_hit BOOLEAN NOT NULL DEFAULT FALSE")
    conn.exec_driver_sql("ALTER TABLE inference_log ADD COLUMN degraded VARCHAR(32)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial: inference_log, feedback_labels", _v1_initial),
    Migration(2, "inference_log: cache_hit, degraded", _v_cache_degraded),
)
HISTORY = SchemaHistory("inference log", VERSION_TABLE, MIGRATIONS, _LOCK_KEY)
SCHEMA_VERSION = HISTORY.latest
