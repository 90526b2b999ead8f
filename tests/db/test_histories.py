"""Each store owns its tables and its schema history: opening one store creates only its own
tables, every history has its own version table and lock key, and what each history creates
matches the mapping its store reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.orm import DeclarativeBase

from ingot.db import normalize_url
from ingot.inference_log import migrations as log_migrations
from ingot.inference_log import schema as log_schema
from ingot.inference_log.store import InferenceLogStore
from ingot.monitor import trigger_migrations, triggers
from ingot.registry import Registry
from ingot.registry import migrations as registry_migrations
from ingot.registry import schema as registry_schema
from ingot.rollout import migrations as rollout_migrations
from ingot.rollout import schema as rollout_schema
from ingot.rollout.store import RolloutStore
from tests.support.databases import backends, database_factory

HISTORIES = (registry_migrations.REGISTRY, rollout_migrations.HISTORY, trigger_migrations.HISTORY,
             log_migrations.HISTORY)


@pytest.fixture(params=backends("registry-postgres"))
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_factory(request, tmp_path, "histories") as make:
        yield make()


def tables(url: str) -> set[str]:
    engine = create_engine(normalize_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_every_history_has_its_own_version_table_and_lock_key() -> None:
    assert len({h.version_table for h in HISTORIES}) == len({h.lock_key for h in HISTORIES}) == len(HISTORIES)


def test_the_registry_keeps_its_version_numbers_with_5_and_6_as_recorded_no_ops() -> None:
    assert [m.version for m in registry_migrations.MIGRATIONS] == [1, 2, 3, 4, 5, 6, 7]
    assert all("no-op" in m.description for m in registry_migrations.MIGRATIONS[4:6])
    assert "dataset_versions" in registry_migrations.MIGRATIONS[6].description  # the next real one


def test_opening_a_store_creates_only_its_own_tables(database_url: str) -> None:
    with Registry.from_url(database_url) as registry:
        registry_tables = {"schema_version", "models", "model_versions", "stage_events", "dataset_versions"}
        assert tables(database_url) == registry_tables
        RolloutStore(registry)
        assert tables(database_url) - registry_tables == {
            "rollout_schema_version", "rollouts", "rollout_transitions", "rollout_leases"}
        triggers.TriggerStore(registry.engine)
        assert {"drift_trigger_schema_version", "drift_triggers"} <= tables(database_url)


def open_registry(url: str) -> None:
    Registry.from_url(url).close()


def open_rollouts(url: str) -> None:
    with Registry.from_url(url) as registry:
        RolloutStore(registry)


def open_triggers(url: str) -> None:
    with Registry.from_url(url) as registry:
        triggers.TriggerStore(registry.engine)


def open_log(url: str) -> None:
    InferenceLogStore.from_url(url).close()


@pytest.mark.parametrize(("base", "open_store"), [
    (registry_schema.Base, open_registry),
    (rollout_schema.Base, open_rollouts),
    (triggers.Base, open_triggers),
    (log_schema.Base, open_log),
])
def test_each_history_makes_the_tables_its_mapping_declares(
    database_url: str, base: type[DeclarativeBase], open_store: Callable[[str], object]
) -> None:
    open_store(database_url)
    engine = create_engine(normalize_url(database_url))
    inspector = inspect(engine)
    for table in base.metadata.sorted_tables:
        reflected = sorted((c["name"], bool(c["nullable"])) for c in inspector.get_columns(table.name))
        assert reflected == sorted((c.name, bool(c.nullable)) for c in table.columns), table.name
        assert {i.name for i in table.indexes} <= {i["name"] for i in inspector.get_indexes(table.name)}
    engine.dispose()
