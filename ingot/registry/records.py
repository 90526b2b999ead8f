"""Plain records the registry returns: detached from any database session, JSON-friendly."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Status(enum.StrEnum):
    """Whether a version's artifact is usable: PENDING until its checksums verify."""

    PENDING = "PENDING"
    READY = "READY"
    FAILED = "FAILED"


class Stage(enum.StrEnum):
    """Where a version stands in the champion/challenger lifecycle."""

    CANDIDATE = "candidate"
    CHALLENGER = "challenger"
    CHAMPION = "champion"
    ARCHIVED = "archived"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ModelVersion:
    """One registry record of a model name.

    A published version has an integer `version` equal to its directory in the model repository.
    A gate rejection has `version=None` (nothing was published, so it takes no number from the
    repository's sequence) and is addressed by `id`; its stage is `rejected`, its status FAILED.
    `stage` is None while a version is PENDING or after it FAILED verification.
    """

    id: int
    name: str
    version: int | None
    status: Status
    stage: Stage | None
    status_reason: str | None
    artifact_uri: str | None
    model_sha256: str | None
    data_hash: str | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    gate: dict[str, Any] | None
    pipeline_run_id: str | None
    registered_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def is_rejection(self) -> bool:
        return self.version is None

    @property
    def blessed(self) -> bool:
        """True only when a gate decision exists and says blessed: no thresholds, no blessing."""
        return bool(self.gate) and self.gate.get("blessed") is True  # type: ignore[union-attr]

    @property
    def reasons(self) -> list[str]:
        """The gate's reasons (why it was rejected, or what passed)."""
        reasons = (self.gate or {}).get("reasons") or []
        return [str(r) for r in reasons]

    @property
    def accuracy(self) -> float | None:
        value = self.metrics.get("accuracy")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def label(self) -> str:
        """How the CLI names it: `digits:3`, or `digits (rejection #12)`."""
        return f"{self.name}:{self.version}" if self.version is not None else f"{self.name} (rejection #{self.id})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "status": self.status.value,
            "stage": self.stage.value if self.stage else None,
            "status_reason": self.status_reason,
            "artifact_uri": self.artifact_uri,
            "model_sha256": self.model_sha256,
            "data_hash": self.data_hash,
            "config": self.config,
            "metrics": self.metrics,
            "gate": self.gate,
            "pipeline_run_id": self.pipeline_run_id,
            "registered_by": self.registered_by,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class StageEvent:
    """One append-only stage change: when, from, to, why and who."""

    id: int
    version_id: int
    at: datetime
    from_stage: Stage | None
    to_stage: Stage
    reason: str
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version_id": self.version_id,
            "at": self.at.isoformat(),
            "from_stage": self.from_stage.value if self.from_stage else None,
            "to_stage": self.to_stage.value,
            "reason": self.reason,
            "actor": self.actor,
        }


@dataclass(frozen=True)
class ModelSummary:
    """A model name with counts, for `ingot models list`."""

    name: str
    created_at: datetime
    versions: int
    rejections: int
    champion: int | None
    latest: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "versions": self.versions,
            "rejections": self.rejections,
            "champion": self.champion,
            "latest": self.latest,
        }


@dataclass(frozen=True)
class NewVersion:
    """What `register_many` needs to register one published version (same as `register_version`)."""

    version: int
    artifact_uri: str
    model_sha256: str
    data_hash: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    pipeline_run_id: str | None = None
