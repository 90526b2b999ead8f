"""Dataset versions in the registry: each Dataset artifact a build produced (its content hash,
URI, parent base dataset, production window and counts), and the link from a model version to
the dataset version it trained on, so a champion's lineage reaches the production rows behind it.

Recording is idempotent: the same content hash for the same model is one dataset version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ingot.errors import NotFoundError
from ingot.registry.schema import DatasetVersionRow, ModelRow, VersionRow

if TYPE_CHECKING:
    from ingot.registry.store import Registry


@dataclass(frozen=True)
class DatasetVersion:
    id: int
    model: str
    content_hash: str
    uri: str
    parent_hash: str | None
    window_start: datetime | None
    window_end: datetime | None
    counts: dict[str, Any]
    sources: dict[str, Any]
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        for key in ("window_start", "window_end", "created_at"):
            doc[key] = doc[key].isoformat() if doc[key] is not None else None
        return doc


def _record(row: DatasetVersionRow) -> DatasetVersion:
    return DatasetVersion(
        id=row.id, model=row.model, content_hash=row.content_hash, uri=row.uri, parent_hash=row.parent_hash,
        window_start=row.window_start, window_end=row.window_end, counts=dict(row.counts or {}),
        sources=dict(row.sources or {}), created_at=row.created_at,
    )


def record_dataset_version(registry: Registry, *, model: str, content_hash: str, uri: str,
                           parent_hash: str | None, window_start: datetime | None, window_end: datetime | None,
                           counts: dict[str, Any], sources: dict[str, Any]) -> DatasetVersion:
    """The dataset version for (model, content_hash), recorded now unless it already was."""

    def write(session: Session) -> DatasetVersion:
        found = session.scalars(select(DatasetVersionRow).where(
            DatasetVersionRow.model == model, DatasetVersionRow.content_hash == content_hash)).first()
        if found is None:
            found = DatasetVersionRow(model=model, content_hash=content_hash, uri=uri, parent_hash=parent_hash,
                                      window_start=window_start, window_end=window_end, counts=counts,
                                      sources=sources, created_at=datetime.now(UTC))
            session.add(found)
            session.flush()
        return _record(found)

    return registry._write(write)


def dataset_versions(registry: Registry, model: str) -> list[DatasetVersion]:
    """The model's dataset versions, newest first."""
    with Session(registry.engine) as session:
        rows = session.scalars(select(DatasetVersionRow).where(DatasetVersionRow.model == model)
                               .order_by(DatasetVersionRow.id.desc()))
        return [_record(row) for row in rows]


def link_dataset_version(registry: Registry, name: str, version: int, dataset_version_id: int) -> None:
    """Record that model `name` version `version` trained on dataset version `dataset_version_id`."""

    def write(session: Session) -> None:
        dataset = session.get(DatasetVersionRow, dataset_version_id)
        if dataset is None:
            raise NotFoundError(f"dataset version {dataset_version_id} is not in the registry")
        row = session.scalars(select(VersionRow).join(ModelRow, VersionRow.model_id == ModelRow.id)
                              .where(ModelRow.name == name, VersionRow.version == version)).first()
        if row is None:
            raise NotFoundError(f"model {name!r} has no version {version} in the registry")
        row.dataset_version_id = dataset_version_id

    registry._write(write)


def dataset_of(registry: Registry, name: str, version: int) -> DatasetVersion | None:
    """The dataset version model `name` version `version` trained on (None: not recorded)."""
    with Session(registry.engine) as session:
        row = session.scalars(select(DatasetVersionRow)
                              .join(VersionRow, VersionRow.dataset_version_id == DatasetVersionRow.id)
                              .join(ModelRow, VersionRow.model_id == ModelRow.id)
                              .where(ModelRow.name == name, VersionRow.version == version)).first()
        return _record(row) if row is not None else None
