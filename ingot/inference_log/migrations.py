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


# The error codes of upstream failures (the model server's, not the caller's), as logged in `status`.
_UPSTREAM_FAILURES = "('UNAVAILABLE', 'DEADLINE_EXCEEDED', 'INTERNAL', 'RESOURCE_EXHAUSTED')"


def _v2_client_request_id_evidence(conn: Connection) -> None:
    """inference_log.client_request_id (the caller's own id, never a key) and evidence (the row's
    variant was assigned at random and the assigned model answered). Rows logged before: those
    assigned by weight that the model answered (OK or an upstream failure) were random draws, so
    they stay evidence; sticky rows are not (no source was trusted then), nor pins, mirrors or
    fallbacks."""
    false = "false" if conn.dialect.name == "postgresql" else "0"
    true = "true" if conn.dialect.name == "postgresql" else "1"
    conn.exec_driver_sql("ALTER TABLE inference_log ADD COLUMN client_request_id VARCHAR(64)")
    conn.exec_driver_sql(f"ALTER TABLE inference_log ADD COLUMN evidence BOOLEAN DEFAULT {false} NOT NULL")
    conn.exec_driver_sql(
        f"UPDATE inference_log SET evidence = {true} WHERE assignment = 'weight' "
        f"AND variant IN ('champion', 'challenger') AND (status = 'OK' OR status IN {_UPSTREAM_FAILURES})"
    )


def _v3_captured(conn: Connection) -> None:
    """inference_log.captured: the row's input is in the capture store (ingot.capture)."""
    conn.exec_driver_sql("ALTER TABLE inference_log ADD COLUMN captured BOOLEAN NOT NULL DEFAULT FALSE")


def _v4_answered_by(conn: Connection) -> None:
    """inference_log.answered_by: `small` or `full` when the row's arm is a confidence cascade
    (ingot.gateway.cascade); NULL for rows logged before and for arms without one."""
    conn.exec_driver_sql("ALTER TABLE inference_log ADD COLUMN answered_by VARCHAR(8)")


def _v5_cache_degraded(conn: Connection) -> None:
    """cache_hit (the answer came from the gateway's prediction cache) and degraded (why the answer
    is not the assigned model's own, NULL when it is); existing rows are neither."""
    conn.exec_driver_sql("ALTER TABLE inference_log ADD COLUMN cache_hit BOOLEAN NOT NULL DEFAULT FALSE")
    conn.exec_driver_sql("ALTER TABLE inference_log ADD COLUMN degraded VARCHAR(32)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial: inference_log, feedback_labels", _v1_initial),
    Migration(2, "inference_log: client_request_id, evidence", _v2_client_request_id_evidence),
    Migration(3, "inference_log.captured", _v3_captured),
    Migration(4, "inference_log.answered_by", _v4_answered_by),
    Migration(5, "inference_log: cache_hit, degraded", _v5_cache_degraded),
)
HISTORY = SchemaHistory("inference log", VERSION_TABLE, MIGRATIONS, _LOCK_KEY)
SCHEMA_VERSION = HISTORY.latest
