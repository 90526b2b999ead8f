"""Versioned schema: fresh creation, migrating a hand-made version-1 database, refusing newer ones."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ingot.db import migrate, normalize_url, open_engine
from ingot.errors import ConfigError
from ingot.registry import SCHEMA_VERSION, Registry, Stage, Status
from ingot.registry.migrations import MIGRATIONS, REGISTRY
from ingot.registry.schema import Base
from tests.registry.helpers import publish

# Version 1 of the schema written out by hand, the way a database created by the first release
# looks on disk; {pk}, {ts} and {json} are the per-dialect types that release used.
V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY, description TEXT NOT NULL, applied_at {ts} NOT NULL);
CREATE TABLE models (id {pk}, name VARCHAR(128) NOT NULL, created_at {ts} NOT NULL,
    CONSTRAINT uq_models_name UNIQUE (name));
CREATE TABLE model_versions (
    id {pk},
    model_id INTEGER NOT NULL CONSTRAINT fk_model_versions_model REFERENCES models (id),
    version INTEGER, status VARCHAR(16) NOT NULL, stage VARCHAR(16), artifact_uri TEXT,
    model_sha256 VARCHAR(64), data_hash VARCHAR(128), config {json} NOT NULL, metrics {json} NOT NULL,
    gate {json}, pipeline_run_id VARCHAR(256), registered_by VARCHAR(128) NOT NULL,
    created_at {ts} NOT NULL, updated_at {ts} NOT NULL,
    CONSTRAINT uq_model_versions_model_version UNIQUE (model_id, version),
    CONSTRAINT ck_model_versions_status CHECK (status IN ('PENDING', 'READY', 'FAILED')),
    CONSTRAINT ck_model_versions_stage CHECK (stage IS NULL OR stage IN
        ('candidate', 'challenger', 'champion', 'archived', 'rejected')),
    CONSTRAINT ck_model_versions_version_positive CHECK (version IS NULL OR version >= 1),
    CONSTRAINT ck_model_versions_unnumbered_rejected CHECK (version IS NOT NULL OR stage = 'rejected'),
    CONSTRAINT ck_model_versions_artifact CHECK (version IS NULL OR
        (artifact_uri IS NOT NULL AND model_sha256 IS NOT NULL)));
CREATE TABLE stage_events (
    id {pk},
    version_id INTEGER NOT NULL CONSTRAINT fk_stage_events_version REFERENCES model_versions (id),
    at {ts} NOT NULL, from_stage VARCHAR(16), to_stage VARCHAR(16) NOT NULL, reason TEXT NOT NULL,
    actor VARCHAR(128) NOT NULL);
CREATE INDEX ix_stage_events_version_id ON stage_events (version_id);
INSERT INTO schema_version VALUES (1, 'initial: models, model_versions, stage_events', {now});
INSERT INTO models (name, created_at) VALUES ('digits', {now});
INSERT INTO model_versions (model_id, version, status, stage, artifact_uri, model_sha256, data_hash, config,
    metrics, gate, pipeline_run_id, registered_by, created_at, updated_at)
VALUES (1, 1, 'READY', 'champion', '/repo/digits/1', '{sha}', 'hash-1', '{{"epochs": 3}}',
    '{{"accuracy": 0.91}}', '{{"blessed": true, "reasons": []}}', 'run-1', 'pipeline', {now}, {now});
INSERT INTO stage_events (version_id, at, from_stage, to_stage, reason, actor)
VALUES (1, {now}, NULL, 'champion', 'first blessed READY version of digits', 'pipeline')
"""
DIALECT_TYPES = {
    "sqlite": {"pk": "INTEGER NOT NULL PRIMARY KEY", "ts": "DATETIME", "json": "JSON", "now": "'2024-05-01 12:00:00.000000'"},
    "postgresql": {"pk": "SERIAL PRIMARY KEY", "ts": "TIMESTAMP WITH TIME ZONE", "json": "JSONB",
                   "now": "'2024-05-01 12:00:00+00'"},
}


def raw_engine(url: str) -> Engine:
    return create_engine(normalize_url(url))


def create_v1_by_hand(url: str, *extra_statements: str) -> None:
    engine = raw_engine(url)
    types = DIALECT_TYPES[engine.dialect.name]
    script = V1_SCHEMA.format(sha="1" * 64, **types)
    with engine.begin() as conn:
        for statement in [*script.split(";\n"), *extra_statements]:
            conn.exec_driver_sql(statement)
    engine.dispose()


def applied_versions(url: str) -> list[int]:
    engine = raw_engine(url)
    with engine.connect() as conn:
        found = [row[0] for row in conn.execute(text("SELECT version FROM schema_version ORDER BY version"))]
    engine.dispose()
    return found


def schema_shape(url: str) -> dict[str, object]:
    """Columns (name, nullable), indexes and unique constraints of every table, as reflected."""
    engine = raw_engine(url)
    inspector = inspect(engine)
    shape: dict[str, object] = {}
    for table in sorted(inspector.get_table_names()):
        shape[table] = {
            "columns": sorted((c["name"], c["nullable"]) for c in inspector.get_columns(table)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)),
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            "checks": sorted(c["name"] for c in inspector.get_check_constraints(table)),
        }
    engine.dispose()
    return shape


def test_a_fresh_database_gets_every_migration(registry_url: str) -> None:
    Registry.from_url(registry_url).close()
    assert applied_versions(registry_url) == [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    assert SCHEMA_VERSION >= 3
    engine = open_engine(normalize_url(registry_url))
    assert migrate(engine, REGISTRY) == []  # nothing left to do on the next open
    engine.dispose()


def test_a_version_1_database_is_migrated_in_place_keeping_its_data(registry_url: str) -> None:
    create_v1_by_hand(registry_url)
    assert applied_versions(registry_url) == [1]
    with Registry.from_url(registry_url) as registry:
        assert applied_versions(registry_url) == list(range(1, SCHEMA_VERSION + 1))
        old = registry.get_version("digits", 1)
        assert (old.status, old.stage, old.status_reason) == (Status.READY, Stage.CHAMPION, None)
        assert old.metrics == {"accuracy": 0.91} and old.config == {"epochs": 3}
        assert old.created_at.isoformat() == "2024-05-01T12:00:00+00:00"
        assert [e.reason for e in registry.events("digits", 1)] == ["first blessed READY version of digits"]
        # v2: a new version verifies next to the old champion; a failure keeps its reason
        assert publish(registry, "digits", 2).stage is Stage.CANDIDATE
        first = registry.record_rejection("digits", reasons=["weak"], pipeline_run_id="run-9")
        assert registry.record_rejection("digits", reasons=["weak"], pipeline_run_id="run-9").id == first.id
        # v3: the old event row is now protected too
        with pytest.raises(DBAPIError, match="stage_events is append-only"):
            with registry.engine.begin() as conn:
                conn.execute(text("DELETE FROM stage_events WHERE version_id = 1"))
        assert registry.champion_metrics("digits") == {"accuracy": 0.91}


def test_a_migrated_database_has_the_same_schema_as_a_fresh_one_and_the_orm(new_database: Callable[[], str]) -> None:
    migrated, fresh = new_database(), new_database()
    create_v1_by_hand(migrated)
    Registry.from_url(migrated).close()
    Registry.from_url(fresh).close()
    migrated_shape, fresh_shape = schema_shape(migrated), schema_shape(fresh)
    assert migrated_shape == fresh_shape
    for table in Base.metadata.sorted_tables:
        orm_columns = sorted((c.name, bool(c.nullable)) for c in table.columns)
        assert fresh_shape[table.name]["columns"] == orm_columns, f"schema.py and migrations.py disagree on {table.name}"
    indexes = {name for name, _, _ in fresh_shape["model_versions"]["indexes"]}
    assert {"uq_model_versions_one_champion", "ix_model_versions_pipeline_run_id"} <= indexes


def test_a_failing_migration_rolls_back_to_the_old_version(registry_url: str) -> None:
    # Two champions of one model: legal in v1, impossible under v2's unique index.
    second_champion = (
        "INSERT INTO model_versions (model_id, version, status, stage, artifact_uri, model_sha256, config, "
        "metrics, registered_by, created_at, updated_at) VALUES (1, 2, 'READY', 'champion', '/repo/digits/2', "
        f"'{'2' * 64}', '{{}}', '{{}}', 'pipeline', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    create_v1_by_hand(registry_url, second_champion)
    with pytest.raises(ConfigError, match=r"registry schema migration 2 \(.*\) failed and was rolled back, "
                                          r"the schema stays at version 1: .*"):
        Registry.from_url(registry_url)
    assert applied_versions(registry_url) == [1]
    columns = {c["name"] for c in inspect(raw_engine(registry_url)).get_columns("model_versions")}
    assert "status_reason" not in columns  # the ALTER before the failing index was undone too


def test_a_newer_schema_is_refused_untouched(registry_url: str) -> None:
    Registry.from_url(registry_url).close()
    engine = raw_engine(registry_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_version VALUES (99, 'from the future', CURRENT_TIMESTAMP)"))
    engine.dispose()
    with pytest.raises(ConfigError, match=f"registry schema is version 99, newer than this ingot understands "
                                          f"\\(up to {SCHEMA_VERSION}\\); upgrade ingot"):
        Registry.from_url(registry_url)
    assert applied_versions(registry_url) == [*range(1, SCHEMA_VERSION + 1), 99]


def test_opening_a_partly_migrated_database_applies_only_what_is_missing(registry_url: str) -> None:
    engine = open_engine(normalize_url(registry_url))
    assert migrate(engine, REGISTRY, target=2) == [1, 2]
    assert migrate(engine, REGISTRY) == list(range(3, SCHEMA_VERSION + 1))
    engine.dispose()


def test_concurrent_first_opens_create_the_schema_once(registry_url: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_registry() -> None:
        try:
            barrier.wait()
            Registry.from_url(registry_url).close()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=open_registry) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert applied_versions(registry_url) == list(range(1, SCHEMA_VERSION + 1))
