"""The inference log's tables (SQLAlchemy Core), the contract between the gateway (writer) and
the rollout controller and drift monitor (readers). Readers aggregate in SQL over these columns.

`inference_log`: one row per predicted row of a request, errors included (then the prediction
columns are NULL and `status` names the error code). A mirrored request adds a `shadow` row with
the same `request_id` and `row`, so (request_id, row, variant) is unique.

`feedback_labels`: one ground-truth label per (request_id, row), copied at join time with the
variant, version, experiment and correctness of the row that *served* it (never the shadow), so
a label is attributed to the model that answered, whatever the routing table says later, and
accuracy per arm is a single-table aggregation.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from ingot.registry.schema import UTCDateTime

NAME_LENGTH = 128
REQUEST_ID_LENGTH = 64

VARIANTS = ("champion", "challenger", "shadow")
ASSIGNMENTS = ("weight", "sticky", "header", "mirror", "fallback")
OK = "OK"

metadata = MetaData()

inference_log = Table(
    "inference_log", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("request_id", String(REQUEST_ID_LENGTH), nullable=False),
    Column("row", Integer, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("model", String(NAME_LENGTH), nullable=False),
    Column("experiment", String(NAME_LENGTH), nullable=True),
    Column("variant", String(16), nullable=False),          # VARIANTS
    Column("assignment", String(16), nullable=False),       # ASSIGNMENTS
    Column("model_version", Integer, nullable=True),        # NULL when no upstream answered
    Column("signature", String(NAME_LENGTH), nullable=False),
    Column("input_sha256", String(64), nullable=True),      # over the decoded input tensor bytes
    Column("predicted_class_id", Integer, nullable=True),
    Column("predicted_class_name", String(NAME_LENGTH), nullable=True),
    Column("confidence", Float, nullable=True),             # top-1 probability
    Column("input_mean", Float, nullable=True),             # pixel intensity 0..255, where the gateway has pixels
    Column("input_std", Float, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("status", String(32), nullable=False),           # "OK" or the error code name
    UniqueConstraint("request_id", "row", "variant", name="uq_inference_log_request_row_variant"),
    Index("ix_inference_log_model_experiment_variant", "model", "experiment", "variant"),
    Index("ix_inference_log_model_ts", "model", "ts"),
)

feedback_labels = Table(
    "feedback_labels", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("request_id", String(REQUEST_ID_LENGTH), nullable=False),
    Column("row", Integer, nullable=False),
    Column("label_id", Integer, nullable=False),
    Column("label_name", String(NAME_LENGTH), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    # Copied from the serving row when the label is joined: the attribution never moves.
    Column("model", String(NAME_LENGTH), nullable=False),
    Column("experiment", String(NAME_LENGTH), nullable=True),
    Column("variant", String(16), nullable=False),
    Column("model_version", Integer, nullable=True),
    Column("correct", Boolean, nullable=False),
    UniqueConstraint("request_id", "row", name="uq_feedback_labels_request_row"),
    Index("ix_feedback_labels_model_experiment_variant", "model", "experiment", "variant"),
)
