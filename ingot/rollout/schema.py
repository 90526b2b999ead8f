"""The rollout tables (rollouts, rollout_transitions, rollout_leases) as typed mappings of the
CURRENT schema; `migrations.py` creates and changes them (a test compares the two)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, MetaData, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ingot import db

NAME_LENGTH = 128
STATE_LENGTH = 16


class Base(db.Base):
    """The rollout store's own tables."""

    __abstract__ = True
    metadata = MetaData()


class RolloutRow(Base):
    """One A/B rollout of a challenger against the champion; `analysis` holds the sequential
    test's running state, `target` what the actuator needs to reach the servers."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(NAME_LENGTH))
    experiment: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    champion_version: Mapped[int]
    challenger_version: Mapped[int]
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    outcome: Mapped[str | None] = mapped_column(String(STATE_LENGTH))
    steps: Mapped[list[int]] = mapped_column(db.json_type())
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
    from_state: Mapped[str | None] = mapped_column(String(STATE_LENGTH))
    to_state: Mapped[str] = mapped_column(String(STATE_LENGTH))
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
