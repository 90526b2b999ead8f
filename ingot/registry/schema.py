"""The registry's tables (models, model_versions, stage_events) as typed SQLAlchemy 2 mappings
of the CURRENT schema.

The tables are created and changed only by `migrations.py` (never `create_all`), so a database
created today and one migrated from version 1 have the same shape; a test compares the two.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ingot import db
from ingot.registry.records import ModelVersion, Stage, StageEvent, Status

NAME_LENGTH = 128
STAGE_LENGTH = 16


class Base(db.Base):
    """The registry's own tables (its own MetaData: other stores' tables are not the registry's)."""

    __abstract__ = True
    metadata = MetaData()


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
    dataset_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))  # schema v7

    def record(self, name: str) -> ModelVersion:
        """The plain record callers get, detached from the session."""
        return ModelVersion(
            id=self.id, name=name, version=self.version, status=Status(self.status),
            stage=Stage(self.stage) if self.stage else None, status_reason=self.status_reason,
            artifact_uri=self.artifact_uri, model_sha256=self.model_sha256, data_hash=self.data_hash,
            config=dict(self.config or {}), metrics=dict(self.metrics or {}),
            gate=dict(self.gate) if self.gate is not None else None, pipeline_run_id=self.pipeline_run_id,
            registered_by=self.registered_by, created_at=self.created_at, updated_at=self.updated_at,
        )


class DatasetVersionRow(Base):
    """A Dataset artifact the registry knows (schema v7): what it was built from and where it is."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("model", "content_hash", name="uq_dataset_versions_model_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(NAME_LENGTH))
    content_hash: Mapped[str] = mapped_column(String(128))
    uri: Mapped[str] = mapped_column(Text)
    parent_hash: Mapped[str | None] = mapped_column(String(128))
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    counts: Mapped[dict[str, Any]]
    sources: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


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

    def record(self) -> StageEvent:
        return StageEvent(
            id=self.id, version_id=self.version_id, at=self.at,
            from_stage=Stage(self.from_stage) if self.from_stage else None, to_stage=Stage(self.to_stage),
            reason=self.reason, actor=self.actor,
        )
