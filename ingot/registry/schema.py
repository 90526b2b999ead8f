"""The registry's tables as typed SQLAlchemy 2 mappings of the CURRENT schema.

The tables are created and changed only by `migrations.py` (never `create_all`), so a database
created today and one migrated from version 1 have the same shape; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAME_LENGTH = 128
STAGE_LENGTH = 16


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out; SQLite stores naive UTC, PostgreSQL timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("registry timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_type() -> JSON:
    """JSON on SQLite, JSONB on PostgreSQL (indexable, compact)."""
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: json_type()}


class SchemaVersionRow(Base):
    """One row per applied migration; the schema's version is the highest."""

    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    description: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[datetime]


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    created_at: Mapped[datetime]


class VersionRow(Base):
    """A published version (integer `version`) or a gate rejection (`version` NULL)."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    version: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(STAGE_LENGTH))
    stage: Mapped[str | None] = mapped_column(String(STAGE_LENGTH))
    status_reason: Mapped[str | None] = mapped_column(Text)  # schema v2
    artifact_uri: Mapped[str | None] = mapped_column(Text)
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    data_hash: Mapped[str | None] = mapped_column(String(128))
    config: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    gate: Mapped[dict[str, Any] | None]
    pipeline_run_id: Mapped[str | None] = mapped_column(String(256))
    registered_by: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EventRow(Base):
    """Append-only: the registry never updates or deletes these; the database rejects it too."""

    __tablename__ = "stage_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    at: Mapped[datetime]
    from_stage: Mapped[str | None] = mapped_column(String(STAGE_LENGTH))
    to_stage: Mapped[str] = mapped_column(String(STAGE_LENGTH))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(NAME_LENGTH))


class RolloutRow(Base):
    """One A/B rollout of a challenger against the champion (schema v5); `analysis` holds the
    sequential test's running state, `target` what the actuator needs to reach the servers."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(NAME_LENGTH))
    experiment: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    champion_version: Mapped[int]
    challenger_version: Mapped[int]
    state: Mapped[str] = mapped_column(String(STAGE_LENGTH))
    outcome: Mapped[str | None] = mapped_column(String(STAGE_LENGTH))
    steps: Mapped[list[int]] = mapped_column(json_type())
    step_index: Mapped[int]
    step_started_at: Mapped[datetime]
    policy: Mapped[dict[str, Any]]
    target: Mapped[dict[str, Any]]
    analysis: Mapped[dict[str, Any]]
    verdict: Mapped[dict[str, Any] | None]
    created_by: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class RolloutTransitionRow(Base):
    """A state change of a rollout with the evidence behind it, written before its action."""

    __tablename__ = "rollout_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"))
    at: Mapped[datetime]
    from_state: Mapped[str | None] = mapped_column(String(STAGE_LENGTH))
    to_state: Mapped[str] = mapped_column(String(STAGE_LENGTH))
    weight: Mapped[int | None]
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(NAME_LENGTH))
    evidence: Mapped[dict[str, Any]]


class RolloutLeaseRow(Base):
    """Who may act on a model's rollouts until when: one controller at a time."""

    __tablename__ = "rollout_leases"

    name: Mapped[str] = mapped_column(String(160), primary_key=True)
    holder: Mapped[str] = mapped_column(String(160))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
