"""The inference log's database: batched row writes (idempotent) and the feedback join.

Opened by URL (`--log-url` / `$INGOT_LOG_URL`, default: the registry's database) through
`ingot.db`'s URL checks and engine set-up, and migrated on open with the log's own schema history.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Self

from sqlalchemy import and_, select, tuple_
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from ingot.db import (
    BUSY_TIMEOUT_OPTION,
    Timeouts,
    default_url,
    migrate,
    normalize_url,
    open_engine,
    upsert_insert,
    utc_now,
)
from ingot.errors import ConfigError
from ingot.inference_log.feedback import (
    InvalidFeedback,
    LabelConflict,
    RowNotLogged,
    UnknownRow,
    resolve_label,
)
from ingot.inference_log.migrations import HISTORY
from ingot.inference_log.records import FeedbackItem, LogRecord, StoredLabel
from ingot.inference_log.schema import OK, feedback_labels, inference_log
from ingot.settings import LOG_URL_ENV

SERVING_VARIANTS = ("champion", "challenger")  # a label joins these, never the shadow

# (model, model_version) -> the model's class names in id order, or None when unknown.
ClassNames = Callable[[str, "int | None"], "Sequence[str] | None"]


def default_log_url() -> str:
    """`$INGOT_LOG_URL`, else the registry's database (so readers find everything in one place)."""
    return os.environ.get(LOG_URL_ENV) or default_url()


class InferenceLogStore:
    """Writes and joins the inference log in SQLite or PostgreSQL."""

    def __init__(self, engine: Engine, *, feedback_busy_ms: int | None = None) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(ingot_write=True)
        # Feedback is answered while a caller waits: on SQLite it waits for the write lock this long.
        self._feedback_engine = (self._write_engine.execution_options(**{BUSY_TIMEOUT_OPTION: feedback_busy_ms})
                                 if feedback_busy_ms is not None else self._write_engine)
        try:
            migrate(self._write_engine, HISTORY)
        except OperationalError as err:
            raise ConfigError(f"cannot open the inference log at {self.url}: {str(err.orig).strip()}") from err

    @classmethod
    def from_url(cls, url: str | None = None, *, timeouts: Timeouts | None = None,
                 feedback_busy_ms: int | None = None) -> InferenceLogStore:
        """Open (creating or migrating the tables as needed) the log at `url`; None: the default.
        `timeouts` bound the database's waits (ingot.db.Timeouts); `feedback_busy_ms` is how
        long a feedback transaction waits for SQLite's write lock."""
        return cls(open_engine(normalize_url(url or default_log_url(), what="inference log URL"), timeouts),
                   feedback_busy_ms=feedback_busy_ms)

    @property
    def url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ rows

    def write(self, records: Sequence[LogRecord]) -> int:
        """Insert a batch in one transaction; rows already there (a retried batch) are skipped."""
        if not records:
            return 0
        with self._write_engine.begin() as conn:
            conn.execute(self._insert_ignoring_duplicates(conn), [record.as_row() for record in records])
        return len(records)

    @staticmethod
    def _insert_ignoring_duplicates(conn: Connection) -> Any:
        return upsert_insert(conn)(inference_log).on_conflict_do_nothing(
            index_elements=["request_id", "row", "variant"]
        )

    def rows(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """Logged rows (of one request, or all), oldest first: for tools and tests."""
        query = select(inference_log).order_by(inference_log.c.id)
        if request_id is not None:
            query = query.where(inference_log.c.request_id == request_id)
        with self._engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def count(self) -> int:
        from sqlalchemy import func

        with self._engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(inference_log)) or 0)

    def labels(self) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(select(feedback_labels).order_by(feedback_labels.c.id))]

    # -------------------------------------------------------------- feedback

    def record_feedback(self, items: Sequence[FeedbackItem], classes: ClassNames) -> list[StoredLabel]:
        """Join each label to the row that SERVED it and store it, all or nothing.

        The label keeps that row's model, experiment, variant and version forever, so it counts
        for the model that answered, whatever the routing table says now. The same label again
        is accepted (idempotent, `created` False); a different one raises LabelConflict; an
        unknown request or row raises RowNotLogged (an UnknownRow: perhaps not written yet), a
        row without a prediction UnknownRow; a label that is no class raises InvalidFeedback.
        """
        now = utc_now()
        with self._feedback_engine.begin() as conn:
            served = self._serving_rows(conn, items)
            stored = []
            for item in items:
                row = served.get((item.request_id, item.row))
                if row is None:
                    raise RowNotLogged(f"no logged prediction for request {item.request_id!r} row {item.row}")
                if row["status"] != OK or row["predicted_class_id"] is None:
                    raise UnknownRow(
                        f"request {item.request_id!r} row {item.row} has no prediction to label "
                        f"(it failed with {row['status']})"
                    )
                stored.append(self._store_label(conn, item, row, classes, now))
        return stored

    @staticmethod
    def _serving_rows(conn: Connection, items: Sequence[FeedbackItem]) -> dict[tuple[str, int], dict[str, Any]]:
        found: dict[tuple[str, int], dict[str, Any]] = {}
        keys = sorted({(item.request_id, item.row) for item in items})
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            query = select(inference_log).where(
                and_(tuple_(inference_log.c.request_id, inference_log.c.row).in_(chunk),
                     inference_log.c.variant.in_(SERVING_VARIANTS))
            )
            for row in conn.execute(query):
                found[(row.request_id, row.row)] = dict(row._mapping)
        return found

    def _store_label(self, conn: Connection, item: FeedbackItem, row: dict[str, Any], classes: ClassNames,
                     now: Any) -> StoredLabel:
        model, version = row["model"], row["model_version"]
        what = f"model {model!r} version {version}"
        names = classes(model, version)
        if not names:
            raise InvalidFeedback(f"the class names of {what} are unknown to the gateway, so label "
                                  f"{item.label!r} cannot be checked; give the gateway the model repository")
        label_id, label_name = resolve_label(item.label, list(names), what=what)
        values = {
            "request_id": item.request_id, "row": item.row, "label_id": label_id, "label_name": label_name,
            "received_at": now, "model": model, "experiment": row["experiment"], "variant": row["variant"],
            "model_version": version, "correct": label_id == row["predicted_class_id"],
        }
        inserted = conn.execute(
            upsert_insert(conn)(feedback_labels).on_conflict_do_nothing(index_elements=["request_id", "row"])
            .returning(feedback_labels.c.id), values
        ).first() is not None
        existing = conn.execute(
            select(feedback_labels).where(feedback_labels.c.request_id == item.request_id,
                                          feedback_labels.c.row == item.row)
        ).one()._mapping
        if existing["label_id"] != label_id:
            raise LabelConflict(
                f"request {item.request_id!r} row {item.row} is already labelled {existing['label_name']!r}, "
                f"not {label_name!r}; labels are never overwritten"
            )
        return StoredLabel(
            request_id=item.request_id, row=item.row, label_id=label_id, label_name=existing["label_name"],
            model=existing["model"], experiment=existing["experiment"], variant=existing["variant"],
            model_version=existing["model_version"], correct=bool(existing["correct"]),
            received_at=existing["received_at"], created=bool(inserted),
        )
