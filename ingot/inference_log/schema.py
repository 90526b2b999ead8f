"""The inference log's tables (SQLAlchemy Core), the contract between the gateway (writer) and
the rollout controller and drift monitor (readers). Readers aggregate in SQL over these columns.

`inference_log`: one row per predicted row of a request, errors included (then the prediction
columns are NULL and `status` names the error code). `evidence` marks the rows a randomised
assignment produced and the assigned model answered; only they count as A/B or drift evidence. A mirrored request adds a `shadow` row with
the same `request_id` and `row`, so (request_id, row, variant) is unique.

`feedback_labels`: one ground-truth label per (request_id, row), copied at join time with the
variant, version, experiment and correctness of the row that *served* it (never the shadow), so
a label is attributed to the model that answered, whatever the routing table says later, and
accuracy per arm is a single-table aggregation.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from ingot import db

NAME_LENGTH = 128
REQUEST_ID_LENGTH = 64

VARIANTS = ("champion", "challenger", "shadow")
ASSIGNMENTS = ("weight", "sticky", "header", "mirror", "fallback")
ANSWERED_BY = ("small", "full")  # which model of a cascaded arm answered (ingot.gateway.cascade)
OK = "OK"
# Failures of the model server behind the gateway (never the caller's own, e.g. INVALID_ARGUMENT):
# the only errors the rollout's error guardrail counts.
UPSTREAM_FAILURES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "RESOURCE_EXHAUSTED")

_BIG_PK = BigInteger().with_variant(Integer, "sqlite")


class Base(db.Base):
    """The inference log's own tables."""

    __abstract__ = True
    metadata = MetaData()


class InferenceLogRow(Base):
    __tablename__ = "inference_log"
    __table_args__ = (
        UniqueConstraint("request_id", "row", "variant", name="uq_inference_log_request_row_variant"),
        Index("ix_inference_log_model_experiment_variant", "model", "experiment", "variant"),
        Index("ix_inference_log_model_ts", "model", "ts"),
    )

    id: Mapped[int] = mapped_column(_BIG_PK, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(REQUEST_ID_LENGTH))
    row: Mapped[int] = mapped_column(Integer)
    ts: Mapped[datetime]
    model: Mapped[str] = mapped_column(String(NAME_LENGTH))
    experiment: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    variant: Mapped[str] = mapped_column(String(16))                  # VARIANTS
    assignment: Mapped[str] = mapped_column(String(16))               # ASSIGNMENTS
    model_version: Mapped[int | None] = mapped_column(Integer)        # NULL when no upstream answered
    signature: Mapped[str] = mapped_column(String(NAME_LENGTH))
    input_sha256: Mapped[str | None] = mapped_column(String(64))      # over the decoded input tensor bytes
    predicted_class_id: Mapped[int | None] = mapped_column(Integer)
    predicted_class_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    confidence: Mapped[float | None] = mapped_column(Float)           # top-1 probability
    input_mean: Mapped[float | None] = mapped_column(Float)           # pixel intensity 0..255, where the gateway has pixels
    input_std: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(32))                   # "OK" or the error code name
    client_request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_LENGTH))  # the caller's own id
    # Assigned at random (weight, or sticky by a trusted caller key) and answered by the assigned
    # model: the only rows rollouts and drift windows count (docs/architecture.md, inference log).
    evidence: Mapped[bool] = mapped_column(Boolean, server_default=false())
    captured: Mapped[bool] = mapped_column(Boolean, server_default=false())  # input in the capture store
    answered_by: Mapped[str | None] = mapped_column(String(8))        # "small" | "full" (cascade), NULL without one
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # from the prediction cache
    degraded: Mapped[str | None] = mapped_column(String(32))          # why not the assigned model's answer; NULL: it was


class FeedbackLabelRow(Base):
    __tablename__ = "feedback_labels"
    __table_args__ = (
        UniqueConstraint("request_id", "row", name="uq_feedback_labels_request_row"),
        Index("ix_feedback_labels_model_experiment_variant", "model", "experiment", "variant"),
    )

    id: Mapped[int] = mapped_column(_BIG_PK, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(REQUEST_ID_LENGTH))
    row: Mapped[int] = mapped_column(Integer)
    label_id: Mapped[int] = mapped_column(Integer)
    label_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    received_at: Mapped[datetime]
    # Copied from the serving row when the label is joined: the attribution never moves.
    model: Mapped[str] = mapped_column(String(NAME_LENGTH))
    experiment: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    variant: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[int | None] = mapped_column(Integer)
    correct: Mapped[bool] = mapped_column(Boolean)


# Readers aggregate in SQL (Core) over these.
metadata = Base.metadata
inference_log = cast(Table, InferenceLogRow.__table__)
feedback_labels = cast(Table, FeedbackLabelRow.__table__)
