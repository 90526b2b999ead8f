"""What the gateway logs and what feedback carries, as plain values (no database here)."""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from ingot.inference_log.schema import REQUEST_ID_LENGTH

# Request ids (the server's, and a caller's own id kept beside it) match this, so a header can
# never smuggle odd bytes into the log or into response headers.
REQUEST_ID_PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._:-]{{0,{REQUEST_ID_LENGTH - 1}}}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def valid_request_id(value: object) -> bool:
    return isinstance(value, str) and REQUEST_ID_PATTERN.fullmatch(value) is not None


@dataclass(slots=True)
class LogRecord:
    """One predicted row, exactly the `inference_log` columns (without the surrogate id)."""

    request_id: str
    row: int
    ts: datetime
    model: str
    experiment: str | None
    variant: str
    assignment: str
    model_version: int | None
    signature: str
    input_sha256: str | None
    predicted_class_id: int | None
    predicted_class_name: str | None
    confidence: float | None
    input_mean: float | None
    input_std: float | None
    latency_ms: float
    status: str
    client_request_id: str | None = None  # the caller's own id (x-ingot-client-request-id), never a key
    evidence: bool = False  # randomised assignment, answered by the assigned model
    captured: bool = False  # the input is (being) stored in the capture store under input_sha256
    answered_by: str | None = None  # `small` or `full` when the arm is a confidence cascade, else None
    cache_hit: bool = False  # answered from the gateway's prediction cache
    degraded: str | None = None  # why the answer is not the assigned model's own (None: it is)

    def as_row(self) -> dict[str, Any]:
        # Not dataclasses.asdict, which deep-copies every value: this runs once per logged row.
        return {name: getattr(self, name) for name in LOG_RECORD_FIELDS}

    def as_json(self) -> dict[str, Any]:
        row = self.as_row()
        row["ts"] = self.ts.isoformat()
        return row


LOG_RECORD_FIELDS = tuple(f.name for f in fields(LogRecord))


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    """A ground-truth label for one row of a logged request: a class name or a class id."""

    request_id: str
    row: int
    label: str | int
    feedback_key: str | None = None  # the answer's x-ingot-feedback-key (its recipient's proof)


@dataclass(frozen=True, slots=True)
class StoredLabel:
    """A label as stored, with the row it was joined to; `created` False for an idempotent repeat."""

    request_id: str
    row: int
    label_id: int
    label_name: str
    model: str
    experiment: str | None
    variant: str
    model_version: int | None
    correct: bool
    received_at: datetime
    created: bool

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["received_at"] = self.received_at.isoformat()
        return doc
