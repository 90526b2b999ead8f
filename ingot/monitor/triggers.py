"""Retraining triggers: a table in the registry's database (with its own schema history,
`trigger_migrations.py`), a cooldown and at most one run in flight
per model, both decided inside one serialized database transaction, so two monitors checking at
the same moment never both start a run.

A claim runs in a write transaction that first takes a per-model lock (`pg_advisory_xact_lock`
on PostgreSQL; `BEGIN IMMEDIATE` on SQLite, which serializes all writers), then refuses when a
trigger of the model is `starting` or `running` (a partial unique index backs this up) or when
the newest trigger, whatever became of it, is younger than the cooldown: a failing pipeline is
retried once per cooldown, not on every check. A run that finishes, fails, or whose local process
died releases the in-flight slot.

States: `starting` (claimed, run not yet submitted) -> `running` (run id known) -> `succeeded` or
`failed`. A claim whose submission fails is marked `failed` with the error.

A version links back to the trigger whose run registered it (`for_run`): through the pipeline
run id its registry record carries, which is the trigger's KFP run id, or the one a local run
recorded when it finished (`finish(..., produced=...)`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Integer, MetaData, String, Table, Text, func, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ingot import db
from ingot.db import migrate, utc_now
from ingot.errors import ConfigError
from ingot.monitor.trigger_migrations import HISTORY

STARTING, RUNNING, SUCCEEDED, FAILED = "starting", "running", "succeeded", "failed"
IN_FLIGHT = (STARTING, RUNNING)
LOCAL, KFP = "local", "kfp"
DEFAULT_COOLDOWN = timedelta(hours=24)
DRIFT_KIND, ACCURACY_KIND, NEW_LABELS_KIND = "drift", "accuracy", "new labels"

class Base(db.Base):
    """The trigger store's own table."""

    __abstract__ = True
    metadata = MetaData()


class DriftTriggerRow(Base):
    """The shape `trigger_migrations.py` creates; a test checks they agree."""

    __tablename__ = "drift_triggers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    statistics: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))
    backend: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str | None] = mapped_column(String(256))
    log_path: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None]
    host: Mapped[str | None] = mapped_column(String(256))  # local: the machine; kfp: the API endpoint
    finished_at: Mapped[datetime | None]
    detail: Mapped[str | None] = mapped_column(Text)
    pipeline_run_id: Mapped[str | None] = mapped_column(String(256), index=True)  # what its records carry
    record_id: Mapped[int | None]  # the registry record the run produced (a version or a rejection)
    version: Mapped[int | None]    # the published version, None for a rejection


drift_triggers = cast(Table, DriftTriggerRow.__table__)  # for Core statements


@dataclass
class Trigger:
    id: int
    model: str
    created_at: datetime
    reason: str
    statistics: dict[str, Any]
    state: str
    backend: str
    run_id: str | None
    log_path: str | None
    pid: int | None
    host: str | None
    finished_at: datetime | None
    detail: str | None
    pipeline_run_id: str | None = None
    record_id: int | None = None
    version: int | None = None

    @property
    def kinds(self) -> list[str]:
        """What fired: `drift`, `accuracy` (labelled accuracy below the floor), `new labels`."""
        recorded = self.statistics.get("kinds")
        if isinstance(recorded, list):
            return [str(kind) for kind in recorded]
        kinds = []  # triggers recorded before `kinds` was: read back from the tests and the reason
        tests = self.statistics.get("tests") or []
        if any(t.get("kind") == "p-value" and not t.get("advisory") and t.get("verdict") == "drift" for t in tests):
            kinds.append(DRIFT_KIND)
        if "labelled accuracy below" in self.reason:
            kinds.append(ACCURACY_KIND)
        if (self.statistics.get("new_labels") or {}).get("reached"):
            kinds.append(NEW_LABELS_KIND)
        return kinds

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["kinds"] = self.kinds
        for key in ("created_at", "finished_at"):
            values[key] = values[key].isoformat() if values[key] is not None else None
        return values


@dataclass(frozen=True)
class Refusal:
    """Why no run was started: the run in flight, or the cooldown's end."""

    reason: str
    blocking: Trigger


def _row(row: Any) -> Trigger:
    return Trigger(**dict(row._mapping))


class TriggerStore:
    """The drift_triggers table, in the registry's database; opening it migrates the table."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._write = engine.execution_options(ingot_write=True)  # BEGIN IMMEDIATE on SQLite
        migrate(self._write, HISTORY)

    def claim(
        self, model: str, *, reason: str, statistics: dict[str, Any], backend: str,
        cooldown: timedelta = DEFAULT_COOLDOWN, now: datetime | None = None,
    ) -> Trigger | Refusal:
        """Record a new trigger in state `starting`, or say why not (in flight, cooling down)."""
        if backend not in (LOCAL, KFP):
            raise ConfigError(f"trigger backend {backend!r} is not one of {LOCAL!r}, {KFP!r}")
        if cooldown < timedelta(0):
            raise ConfigError(f"cooldown {cooldown} must not be negative")
        now = now or utc_now()
        table = drift_triggers
        try:
            with self._write.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"ingot-drift:{model}"})
                flying = conn.execute(select(table).where(table.c.model == model, table.c.state.in_(IN_FLIGHT))
                                      .order_by(table.c.id.desc()).limit(1)).first()
                if flying is not None:
                    blocking = _row(flying)
                    return Refusal(f"trigger #{blocking.id} of {model!r} is still {blocking.state} "
                                   f"(run {blocking.run_id or '-'}): at most one run in flight", blocking)
                newest = conn.execute(select(table).where(table.c.model == model)
                                      .order_by(table.c.created_at.desc(), table.c.id.desc()).limit(1)).first()
                if newest is not None and now - _row(newest).created_at < cooldown:
                    blocking = _row(newest)
                    until = blocking.created_at + cooldown
                    return Refusal(f"cooling down until {until.isoformat(timespec='seconds')} (trigger #{blocking.id} "
                                   f"at {blocking.created_at.isoformat(timespec='seconds')}, cooldown {cooldown})", blocking)
                new_id = conn.execute(insert(table).values(
                    model=model, created_at=now, reason=reason, statistics=statistics, state=STARTING,
                    backend=backend,
                ).returning(table.c.id)).scalar_one()
                return _row(conn.execute(select(table).where(table.c.id == new_id)).one())
        except IntegrityError:
            # Only the partial unique index can refuse the insert: another monitor's claim won.
            winner = self.in_flight(model)
            if winner is None:
                raise
            return Refusal(f"trigger #{winner.id} of {model!r} is {winner.state}: at most one run in flight", winner)

    def mark_running(self, trigger_id: int, *, run_id: str, log_path: str | None = None,
                     pid: int | None = None, host: str | None = None) -> Trigger:
        with self._write.begin() as conn:
            conn.execute(update(drift_triggers).where(drift_triggers.c.id == trigger_id).values(
                state=RUNNING, run_id=run_id, log_path=log_path, pid=pid, host=host))
        return self.get(trigger_id)

    def finish(self, trigger_id: int, state: str, detail: str | None = None, *,
               produced: dict[str, Any] | None = None) -> Trigger:
        """Record the outcome (`succeeded` or `failed`); this releases the in-flight slot.
        `produced`: the registry record the run made (`id`, `version`, `pipeline_run_id`)."""
        if state not in (SUCCEEDED, FAILED):
            raise ConfigError(f"a trigger finishes as {SUCCEEDED!r} or {FAILED!r}, not {state!r}")
        values: dict[str, Any] = {"state": state, "finished_at": utc_now(), "detail": detail}
        if produced:
            values.update(pipeline_run_id=produced.get("pipeline_run_id"), record_id=produced.get("id"),
                          version=produced.get("version"))
        with self._write.begin() as conn:
            conn.execute(update(drift_triggers).where(drift_triggers.c.id == trigger_id).values(**values))
        return self.get(trigger_id)

    def for_run(self, model: str, pipeline_run_id: str) -> Trigger | None:
        """The trigger of `model` whose run registered records with this pipeline run id: a KFP
        run's id is the trigger's run id; a local run records its own when it finishes."""
        table = drift_triggers
        with self._engine.connect() as conn:
            row = conn.execute(select(table).where(
                table.c.model == model,
                (table.c.pipeline_run_id == pipeline_run_id) | (table.c.run_id == pipeline_run_id),
            ).order_by(table.c.id.desc()).limit(1)).first()
        return _row(row) if row is not None else None

    def get(self, trigger_id: int) -> Trigger:
        with self._engine.connect() as conn:
            row = conn.execute(select(drift_triggers).where(drift_triggers.c.id == trigger_id)).first()
        if row is None:
            raise ConfigError(f"no drift trigger #{trigger_id}")
        return _row(row)

    def in_flight(self, model: str) -> Trigger | None:
        table = drift_triggers
        with self._engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.model == model, table.c.state.in_(IN_FLIGHT))
                               .order_by(table.c.id.desc()).limit(1)).first()
        return _row(row) if row is not None else None

    def history(self, model: str, limit: int = 20) -> list[Trigger]:
        table = drift_triggers
        with self._engine.connect() as conn:
            rows = conn.execute(select(table).where(table.c.model == model)
                                .order_by(table.c.id.desc()).limit(limit)).all()
        return [_row(row) for row in rows]

    def count(self, model: str) -> int:
        with self._engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(drift_triggers)
                                   .where(drift_triggers.c.model == model)) or 0)


def this_host() -> str:
    return socket.gethostname()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
