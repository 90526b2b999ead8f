"""The rollout store's schema history (version table `rollout_schema_version`), run by
`ingot.db.migrate` when a `RolloutStore` opens.

Until this history existed the registry's migration 5 made these tables, so migration 1 here
creates each table and index only when it is absent: on a database an older registry made it
adopts the tables with their rows, on a fresh one it creates them. Migrations are frozen DDL; to
change the tables append one here and update `schema.py` to match.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Connection

from ingot.db import Migration, SchemaHistory, json_type


def _v1_rollouts(conn: Connection) -> None:
    """Rollouts (A/B tests ending in promotion or rollback), their transitions, controller leases.

    A transition row holds the statistics behind it and is written BEFORE the action it
    announces, so the history explains every routing change and a restarted controller knows
    what it was doing. The partial unique index allows one unfinished rollout per model; the
    lease table lets exactly one controller act on a model at a time.
    """
    metadata = MetaData()
    Table(
        "rollouts", metadata,
        Column("id", Integer, primary_key=True),
        Column("model", String(128), nullable=False),
        Column("experiment", String(128), nullable=False),
        Column("champion_version", Integer, nullable=False),
        Column("challenger_version", Integer, nullable=False),
        Column("state", String(16), nullable=False),
        Column("outcome", String(16), nullable=True),
        Column("steps", json_type(), nullable=False),
        Column("step_index", Integer, nullable=False),
        Column("step_started_at", DateTime(timezone=True), nullable=False),
        Column("policy", json_type(), nullable=False),
        Column("target", json_type(), nullable=False),
        Column("analysis", json_type(), nullable=False),
        Column("verdict", json_type(), nullable=True),
        Column("created_by", String(128), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True), nullable=True),
        UniqueConstraint("experiment", name="uq_rollouts_experiment"),
        CheckConstraint(
            "state IN ('pending', 'warming', 'analyzing', 'promoting', 'promoted', 'rolling_back', "
            "'rolled_back', 'inconclusive', 'aborted')",
            name="ck_rollouts_state",
        ),
        CheckConstraint("challenger_version <> champion_version", name="ck_rollouts_two_versions"),
        Index("ix_rollouts_model", "model", "id"),
    )
    Table(
        "rollout_transitions", metadata,
        Column("id", Integer, primary_key=True),
        Column("rollout_id", Integer, ForeignKey("rollouts.id", name="fk_rollout_transitions_rollout"),
               nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("from_state", String(16), nullable=True),
        Column("to_state", String(16), nullable=False),
        Column("weight", Integer, nullable=True),
        Column("reason", Text, nullable=False),
        Column("actor", String(128), nullable=False),
        Column("evidence", json_type(), nullable=False),
        Index("ix_rollout_transitions_rollout_id", "rollout_id", "id"),
    )
    Table(
        "rollout_leases", metadata,
        Column("name", String(160), primary_key=True),
        Column("holder", String(160), nullable=False),
        Column("acquired_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    )
    metadata.create_all(conn, checkfirst=True)
    conn.exec_driver_sql(
        "CREATE UNIQUE INDEX IF NOT EXISTS uq_rollouts_one_active ON rollouts (model) "
        "WHERE state NOT IN ('promoted', 'rolled_back', 'inconclusive', 'aborted')"
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "rollouts, rollout_transitions, rollout_leases (adopted when registry migration 5 made them)",
              _v1_rollouts),
)
HISTORY = SchemaHistory("rollout", "rollout_schema_version", MIGRATIONS, 0x1D_907_2011)
SCHEMA_VERSION = HISTORY.latest
