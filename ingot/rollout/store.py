"""Rollouts in the registry's database (their own tables and schema history): records, compare-and-set state transitions with their
evidence, and the lease that lets exactly one controller act on a model at a time.

A transition is an UPDATE ... WHERE state = <expected> plus an INSERT of the transition row in
one transaction: two actors racing on the same rollout cannot both move it, and the history
never shows a state the row did not have.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from ingot.db import migrate, utc_now
from ingot.errors import ConfigError, IngotError, NotFoundError
from ingot.protocol.names import EXPERIMENT_NAME
from ingot.rollout.migrations import HISTORY
from ingot.rollout.schema import RolloutLeaseRow, RolloutRow, RolloutTransitionRow

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ingot.registry import Registry

STATES = ("pending", "warming", "analyzing", "promoting", "promoted", "rolling_back", "rolled_back",
          "inconclusive", "aborted")
FINAL_STATES = frozenset({"promoted", "rolled_back", "inconclusive", "aborted"})
# Where each state may go; `rolling_back` ends in the outcome recorded when it was entered.
NEXT_STATES: dict[str, frozenset[str]] = {
    "pending": frozenset({"warming", "rolling_back", "promoting"}),
    "warming": frozenset({"analyzing", "rolling_back", "promoting"}),
    "analyzing": frozenset({"analyzing", "promoting", "rolling_back"}),
    "promoting": frozenset({"promoted"}),
    "rolling_back": frozenset({"rolled_back", "inconclusive", "aborted"}),
}


class TransitionConflict(IngotError):
    """The rollout was not in the expected state: another actor moved it first."""


@dataclass(frozen=True)
class Transition:
    id: int
    at: datetime
    from_state: str | None
    to_state: str
    weight: int | None
    reason: str
    actor: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "from_state": self.from_state, "to_state": self.to_state,
                "weight": self.weight, "reason": self.reason, "actor": self.actor, "evidence": self.evidence}


@dataclass(frozen=True)
class Rollout:
    id: int
    model: str
    experiment: str
    champion_version: int
    challenger_version: int
    state: str
    outcome: str | None
    steps: list[int]
    step_index: int
    step_started_at: datetime
    policy: dict[str, Any]
    target: dict[str, Any]
    analysis: dict[str, Any]
    verdict: dict[str, Any] | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    transitions: list[Transition] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def weight(self) -> int:
        """The challenger's percent of traffic in the current state."""
        if self.state in ("analyzing",):
            return int(self.steps[self.step_index])
        return 0

    @property
    def last_step(self) -> bool:
        return self.step_index >= len(self.steps) - 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "model": self.model, "experiment": self.experiment,
            "champion_version": self.champion_version, "challenger_version": self.challenger_version,
            "state": self.state, "outcome": self.outcome, "steps": self.steps, "step_index": self.step_index,
            "weight": self.weight, "step_started_at": self.step_started_at.isoformat(), "policy": self.policy,
            "target": self.target, "analysis": self.analysis, "verdict": self.verdict,
            "created_by": self.created_by, "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "transitions": [t.to_dict() for t in self.transitions],
        }


def experiment_id(model: str, challenger: int, champion: int) -> str:
    """`<model>-v<challenger>-vs-v<champion>-<short id>`: unique per rollout, so only rows predicted
    inside this rollout count, even when the same pair is tested again later."""
    return f"{model}-v{challenger}-vs-v{champion}-{secrets.token_hex(3)}"


def check_steps(steps: list[int]) -> list[int]:
    if not steps or any(not isinstance(s, int) or isinstance(s, bool) or not 0 < s <= 100 for s in steps):
        raise ConfigError(f"weight steps {steps!r} are invalid; expected percents in 1..100, e.g. 10,50")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ConfigError(f"weight steps {steps!r} must increase, e.g. 10,50")
    return list(steps)


class RolloutStore:
    """Rollout records and leases, in the registry's database; opening it migrates its tables."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._engine: Engine = registry.engine
        self._write_engine: Engine = registry.engine.execution_options(ingot_write=True)
        migrate(self._write_engine, HISTORY)

    # ------------------------------------------------------------------ rollouts

    def create(self, *, model: str, champion: int, challenger: int, steps: list[int], policy: dict[str, Any],
               target: dict[str, Any], actor: str, experiment: str | None = None, reason: str | None = None,
               evidence: dict[str, Any] | None = None) -> Rollout:
        """A new rollout in `pending`; refused while another of the same model is unfinished.
        `reason` and `evidence` add why it was started to its first transition."""
        steps = check_steps(steps)
        experiment = experiment or experiment_id(model, challenger, champion)
        if not EXPERIMENT_NAME.fullmatch(experiment):
            raise ConfigError(f"experiment id {experiment!r} is invalid; expected letters, digits, '.', '_', '-'")
        if champion == challenger:
            raise ConfigError(f"challenger version {challenger} is already the champion of {model}")
        now = utc_now()
        try:
            with self._write_engine.begin() as conn:
                rollout_id = conn.execute(insert(RolloutRow).values(
                    model=model, experiment=experiment, champion_version=champion, challenger_version=challenger,
                    state="pending", outcome=None, steps=steps, step_index=0, step_started_at=now, policy=policy,
                    target=target, analysis={}, verdict=None, created_by=actor, created_at=now, updated_at=now,
                    finished_at=None,
                ).returning(RolloutRow.id)).scalar_one()
                conn.execute(insert(RolloutTransitionRow).values(
                    rollout_id=rollout_id, at=now, from_state=None, to_state="pending", weight=0,
                    reason=f"rollout of {model}:{challenger} against champion {model}:{champion}, steps {steps}"
                    + (f": {reason}" if reason else ""),
                    actor=actor, evidence=_jsonable({**(evidence or {}), "policy": policy, "steps": steps}),
                ))
        except IntegrityError:
            active = self.active(model)
            if active is not None:
                raise ConfigError(
                    f"{model} already has an unfinished rollout #{active.id} ({active.experiment}, {active.state}); "
                    "finish it with `ingot rollout promote|rollback` first"
                ) from None
            raise ConfigError(f"experiment id {experiment!r} is already used by another rollout") from None
        return self.get(rollout_id)

    def get(self, rollout_id: int, *, transitions: bool = True) -> Rollout:
        with self._engine.connect() as conn:
            row = conn.execute(select(RolloutRow).where(RolloutRow.id == rollout_id)).mappings().first()
            if row is None:
                raise NotFoundError(f"no rollout #{rollout_id}")
            history = []
            if transitions:
                history = [
                    Transition(id=t["id"], at=t["at"], from_state=t["from_state"], to_state=t["to_state"],
                               weight=t["weight"], reason=t["reason"], actor=t["actor"], evidence=t["evidence"])
                    for t in conn.execute(select(RolloutTransitionRow).where(
                        RolloutTransitionRow.rollout_id == rollout_id).order_by(RolloutTransitionRow.id)).mappings()
                ]
        return Rollout(**{k: row[k] for k in _ROLLOUT_FIELDS}, transitions=history)

    def active(self, model: str) -> Rollout | None:
        with self._engine.connect() as conn:
            found = conn.scalar(select(RolloutRow.id).where(
                RolloutRow.model == model, RolloutRow.state.not_in(FINAL_STATES)))
        return self.get(found) if found is not None else None

    def latest(self, model: str) -> Rollout:
        """The unfinished rollout of `model`, else its most recent one."""
        with self._engine.connect() as conn:
            found = conn.scalar(select(RolloutRow.id).where(RolloutRow.model == model)
                                .order_by(RolloutRow.id.desc()).limit(1))
        if found is None:
            raise NotFoundError(f"{model} has no rollout; start one with `ingot rollout start {model} --challenger N`")
        return self.active(model) or self.get(found)

    def unfinished(self) -> list[Rollout]:
        with self._engine.connect() as conn:
            ids = list(conn.scalars(select(RolloutRow.id).where(RolloutRow.state.not_in(FINAL_STATES))
                                    .order_by(RolloutRow.id)))
        return [self.get(i, transitions=False) for i in ids]

    def models(self) -> list[str]:
        """Every model that has had a rollout."""
        with self._engine.connect() as conn:
            return list(conn.scalars(select(RolloutRow.model).distinct().order_by(RolloutRow.model)))

    def challenged(self, model: str) -> set[int]:
        """The versions of `model` that were ever the challenger of a rollout."""
        with self._engine.connect() as conn:
            return set(conn.scalars(select(RolloutRow.challenger_version).where(RolloutRow.model == model)))

    def list(self, model: str | None = None) -> list[Rollout]:
        query = select(RolloutRow.id).order_by(RolloutRow.id.desc())
        if model is not None:
            query = query.where(RolloutRow.model == model)
        with self._engine.connect() as conn:
            ids = list(conn.scalars(query))
        return [self.get(i, transitions=False) for i in ids]

    def transition(self, rollout: Rollout, to_state: str, *, reason: str, actor: str, evidence: dict[str, Any],
                   **changes: Any) -> Rollout:
        """Move `rollout` from the state it was read in to `to_state`, writing the evidence in the same
        transaction; raises TransitionConflict if someone else moved it first."""
        if to_state not in NEXT_STATES.get(rollout.state, frozenset()):
            raise ConfigError(f"rollout #{rollout.id} is {rollout.state}; it cannot go to {to_state}")
        unknown = set(changes) - {"step_index", "step_started_at", "analysis", "verdict", "outcome"}
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)} in a transition")
        now = utc_now()
        values: dict[str, Any] = {"state": to_state, "updated_at": now, **changes}
        if to_state in FINAL_STATES:
            values["finished_at"] = now
        steps, index = rollout.steps, changes.get("step_index", rollout.step_index)
        weight = int(steps[index]) if to_state == "analyzing" else 0
        with self._write_engine.begin() as conn:
            moved = conn.execute(update(RolloutRow).where(
                RolloutRow.id == rollout.id, RolloutRow.state == rollout.state,
                RolloutRow.step_index == rollout.step_index).values(**values)).rowcount
            if moved != 1:
                raise TransitionConflict(
                    f"rollout #{rollout.id} is no longer {rollout.state} at step {rollout.step_index}; "
                    "another controller or a manual override moved it"
                )
            conn.execute(insert(RolloutTransitionRow).values(
                rollout_id=rollout.id, at=now, from_state=rollout.state, to_state=to_state, weight=weight,
                reason=reason, actor=actor, evidence=_jsonable(evidence),
            ))
        return self.get(rollout.id)

    def save_analysis(self, rollout: Rollout, analysis: dict[str, Any], verdict: dict[str, Any]) -> Rollout:
        """Keep the sequential test's state and the last verdict between looks (no state change)."""
        with self._write_engine.begin() as conn:
            conn.execute(update(RolloutRow).where(RolloutRow.id == rollout.id, RolloutRow.state == rollout.state)
                         .values(analysis=_jsonable(analysis), verdict=_jsonable(verdict), updated_at=utc_now()))
        return self.get(rollout.id, transitions=False)

    # ------------------------------------------------------------------ leases

    def acquire(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease `name` for `holder` until now + ttl; False if another holds it."""
        now = utc_now()
        expires = now + timedelta(seconds=ttl_s)
        with self._write_engine.begin() as conn:
            taken = conn.execute(update(RolloutLeaseRow).where(
                RolloutLeaseRow.name == name,
                (RolloutLeaseRow.holder == holder) | (RolloutLeaseRow.expires_at < now),
            ).values(holder=holder, expires_at=expires)).rowcount
            if taken == 1:
                return True
            exists = conn.scalar(select(RolloutLeaseRow.name).where(RolloutLeaseRow.name == name))
            if exists is not None:
                return False
        try:
            with self._write_engine.begin() as conn:
                conn.execute(insert(RolloutLeaseRow).values(name=name, holder=holder, acquired_at=now,
                                                            expires_at=expires))
            return True
        except IntegrityError:  # another controller inserted it between our two transactions
            return False

    def release(self, name: str, holder: str) -> None:
        with self._write_engine.begin() as conn:
            conn.execute(update(RolloutLeaseRow).where(RolloutLeaseRow.name == name, RolloutLeaseRow.holder == holder)
                         .values(expires_at=utc_now() - timedelta(seconds=1)))

    def lease_holder(self, name: str) -> str | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(RolloutLeaseRow.holder, RolloutLeaseRow.expires_at)
                               .where(RolloutLeaseRow.name == name)).first()
        return row[0] if row is not None and row[1] > utc_now() else None


_ROLLOUT_FIELDS = ("id", "model", "experiment", "champion_version", "challenger_version", "state", "outcome",
                   "steps", "step_index", "step_started_at", "policy", "target", "analysis", "verdict",
                   "created_by", "created_at", "updated_at", "finished_at")


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy floats and tuples from the analysis become floats and lists)."""
    import json

    return json.loads(json.dumps(value, default=float))
