"""A registry + inference log database made by the migrations before the database split
(registry schema 6 holding the rollout and drift-trigger tables, log schema 1), with rows in
every table, upgrades in place to the split layout with every row intact, on both backends.

The databases come from frozen SQL dumps (tests/db/fixtures/, made by make_fixtures.py at the
commit before the split), so this keeps testing the real old layout whatever the code becomes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from ingot.db import normalize_url
from ingot.inference_log.store import InferenceLogStore
from ingot.monitor.triggers import TriggerStore
from ingot.registry import Registry, Stage
from ingot.rollout.store import RolloutStore
from tests.support.databases import backends, database_factory

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_TABLES = ("schema_version", "models", "model_versions", "stage_events", "rollouts", "rollout_transitions",
              "rollout_leases", "drift_triggers", "inference_log_schema_version", "inference_log", "feedback_labels")
NEW_VERSION_TABLES = ("rollout_schema_version", "drift_trigger_schema_version")
LOG_CHANGED = ("inference_log", "inference_log_schema_version")  # the log's own migrations 2-5 change these
# Registry migration 7 adds dataset_versions and model_versions.dataset_version_id (NULL for old rows).
REGISTRY_CHANGED = ("schema_version", "model_versions")
# Trigger migration 2 adds pipeline_run_id, record_id and version (NULL for old rows).
TRIGGERS_CHANGED = ("drift_triggers",)


@pytest.fixture(params=backends("registry-postgres"))
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    with database_factory(request, tmp_path, "upgrade") as make:
        yield make


def load_fixture(url: str) -> None:
    """The old database, restored from its dump."""
    parsed = normalize_url(url)
    script = (FIXTURES / f"registry_v6_log_v1.{parsed.get_backend_name()}.sql").read_text()
    if parsed.get_backend_name() == "sqlite":
        with sqlite3.connect(str(parsed.database)) as conn:
            conn.executescript(script)
        return
    import psycopg

    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:  # pg_dump's SETs (an empty search_path) end with this session
        conn.execute(script)  # type: ignore[arg-type]


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as the driver returns it, in primary-key order."""
    engine = create_engine(normalize_url(url))
    try:
        inspector = inspect(engine)
        rows: dict[str, list[tuple[Any, ...]]] = {}
        with engine.connect() as conn:
            for table in sorted(inspector.get_table_names()):
                key = ", ".join(inspector.get_pk_constraint(table)["constrained_columns"])
                rows[table] = [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY {key}"))]
        return rows
    finally:
        engine.dispose()


def shape(url: str) -> dict[str, object]:
    """Columns, indexes, unique and check constraints of every table, as reflected."""
    engine = create_engine(normalize_url(url))
    inspector = inspect(engine)
    found: dict[str, object] = {}
    for table in sorted(inspector.get_table_names()):
        found[table] = {
            "columns": sorted((c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in inspector.get_indexes(table)),
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            "checks": sorted(c["name"] for c in inspector.get_check_constraints(table)),
        }
    engine.dispose()
    return found


def open_every_store(url: str) -> None:
    with Registry.from_url(url) as registry:
        RolloutStore(registry)
        TriggerStore(registry.engine)
    InferenceLogStore.from_url(url).close()


def test_an_old_database_upgrades_in_place_with_every_row_intact(new_database: Callable[[], str]) -> None:
    url = new_database()
    load_fixture(url)
    before = snapshot(url)
    assert set(before) == set(OLD_TABLES)
    assert all(before[table] for table in OLD_TABLES), "the fixture has rows in every table"
    assert [row[0] for row in before["schema_version"]] == [1, 2, 3, 4, 5, 6]

    open_every_store(url)
    after = snapshot(url)
    unchanged = [table for table in OLD_TABLES if table not in LOG_CHANGED + REGISTRY_CHANGED + TRIGGERS_CHANGED]
    assert {table: after[table] for table in unchanged} == {table: before[table] for table in unchanged}
    # the new histories adopted the tables registry 5 and 6 made (their migration 1); triggers then went on
    assert [row[0] for row in after["rollout_schema_version"]] == [1]
    assert [row[0] for row in after["drift_trigger_schema_version"]] == [1, 2]
    assert after["drift_triggers"] == [(*old, None, None, None) for old in before["drift_triggers"]]
    assert [row[0] for row in after["schema_version"]] == [1, 2, 3, 4, 5, 6, 7]
    assert after["schema_version"][:6] == before["schema_version"]
    assert after["model_versions"] == [(*old, None) for old in before["model_versions"]]
    assert after["dataset_versions"] == []
    # The log's migration 2 adds client_request_id (NULL for old rows) and evidence: the old weight
    # rows a model answered stay evidence, the shadow row does not; 3 adds captured (false), 4
    # answered_by (NULL: no cascade answered them), 5 cache_hit (false) and degraded (NULL). Every
    # old value is kept.
    assert after["inference_log"] == [(*old, None, old[7] == "weight" and old[6] != "shadow", False, None, False, None)
                                      for old in before["inference_log"]]
    assert [row[0] for row in after["inference_log_schema_version"]] == [1, 2, 3, 4, 5]
    assert after["inference_log_schema_version"][0] == before["inference_log_schema_version"][0]

    open_every_store(url)  # reopening is a no-op
    assert snapshot(url) == after


def test_the_upgraded_database_works_and_has_the_fresh_layout(new_database: Callable[[], str]) -> None:
    upgraded, fresh = new_database(), new_database()
    load_fixture(upgraded)
    open_every_store(upgraded)
    open_every_store(fresh)
    assert shape(upgraded) == shape(fresh)

    with Registry.from_url(upgraded) as registry:
        assert registry.champion("digits").version == 1  # type: ignore[union-attr]
        assert registry.latest("digits", Stage.CHALLENGER).version == 2  # type: ignore[union-attr]
        assert [e.to_stage for e in registry.events("digits", 2)] == [Stage.CANDIDATE, Stage.CHALLENGER]
        with pytest.raises(Exception, match="append-only"):  # the old database guard still holds
            with registry.engine.begin() as conn:
                conn.execute(text("DELETE FROM stage_events"))
        rollouts = RolloutStore(registry)
        active = rollouts.active("digits")
        assert active is not None and active.state == "analyzing" and len(active.transitions) == 3
        triggers = TriggerStore(registry.engine)
        in_flight = triggers.in_flight("digits")
        assert in_flight is not None and in_flight.backend == "kfp" and triggers.count("digits") == 2
        (ran,) = [t for t in triggers.history("digits") if t.run_id is not None]  # links by its run id
        assert triggers.for_run("digits", ran.run_id).id == ran.id  # type: ignore[union-attr]
        assert (ran.pipeline_run_id, ran.record_id, ran.version) == (None, None, None)
    with InferenceLogStore.from_url(upgraded) as log:
        assert log.count() == 5 and [label["label_id"] for label in log.labels()] == [0, 7]
