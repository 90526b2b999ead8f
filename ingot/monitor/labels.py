"""The new-data trigger: "at least N new labelled production rows since the champion's dataset".

A row counts when it was served by MODEL, has a feedback label and an input hash (so a dataset
build can use it when its input was captured), and its request came after the end of the window
of the dataset version the champion trained on. A champion trained on no production data (no
dataset version) has seen none of them, so every labelled row counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class NewLabels:
    count: int
    threshold: int
    since: datetime | None           # the end of the champion's dataset window; None: all rows
    dataset_version: int | None      # the champion's dataset version

    @property
    def reached(self) -> bool:
        return self.count >= self.threshold

    def reason(self) -> str:
        where = (f"since the end of dataset version {self.dataset_version}'s window ({self.since.isoformat(timespec='seconds')})"
                 if self.since is not None else "and the champion trained on no production data")
        return f"{self.count} new labelled production rows (threshold {self.threshold}) {where}"

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "threshold": self.threshold, "reached": self.reached,
                "since": self.since.isoformat() if self.since else None, "dataset_version": self.dataset_version}


def labelled_rows_since(engine: Any, model: str, since: datetime | None) -> int:
    """Labelled, served rows of `model` with an input hash, requested after `since` (None: all)."""
    from sqlalchemy import and_, func, select

    from ingot.inference_log.schema import feedback_labels as fl
    from ingot.inference_log.schema import inference_log as il

    condition = and_(fl.c.model == model, il.c.input_sha256.is_not(None))
    if since is not None:
        condition = and_(condition, il.c.ts > since)
    query = (select(func.count()).select_from(fl.join(il, and_(il.c.request_id == fl.c.request_id,
                                                               il.c.row == fl.c.row, il.c.variant == fl.c.variant)))
             .where(condition))
    with engine.connect() as conn:
        return int(conn.scalar(query) or 0)


def new_labels(registry: Any, log_engine: Any, model: str, champion_version: int, threshold: int) -> NewLabels:
    """How many labelled production rows arrived since the champion's dataset window ended."""
    from ingot.registry.datasets import dataset_of

    dataset = dataset_of(registry, model, champion_version)
    since = dataset.window_end if dataset is not None else None
    return NewLabels(labelled_rows_since(log_engine, model, since), int(threshold), since,
                     dataset.id if dataset is not None else None)
