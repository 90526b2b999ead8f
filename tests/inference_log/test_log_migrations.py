"""The log's schema: its own version table, next to the registry's in one database, matching schema.py."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from ingot.db import migrate, normalize_url, open_engine, schema_version
from ingot.errors import ConfigError
from ingot.inference_log import schema
from ingot.inference_log.migrations import HISTORY, SCHEMA_VERSION, VERSION_TABLE
from ingot.inference_log.store import InferenceLogStore, default_log_url
from ingot.registry import Registry


def test_a_fresh_database_gets_the_log_tables_and_its_own_version_table(log_url: str) -> None:
    InferenceLogStore.from_url(log_url).close()
    engine = create_engine(normalize_url(log_url))
    inspector = inspect(engine)
    assert {"inference_log", "feedback_labels", VERSION_TABLE} <= set(inspector.get_table_names())
    assert "schema_version" not in inspector.get_table_names()  # the registry's is not touched
    with engine.connect() as conn:
        assert schema_version(conn, HISTORY) == SCHEMA_VERSION == 5  # 4: answered_by, 5: cache_hit, degraded
    engine.dispose()
    engine = open_engine(normalize_url(log_url))
    assert migrate(engine, HISTORY) == []  # nothing left on the next open
    engine.dispose()


def test_log_and_registry_share_one_database_each_with_its_own_history(log_url: str) -> None:
    with Registry.from_url(log_url) as registry, InferenceLogStore.from_url(log_url) as store:
        registry.register_version("digits", version=1, artifact_uri="/r/digits/1", model_sha256="a" * 64)
        assert store.count() == 0
    with InferenceLogStore.from_url(log_url), Registry.from_url(log_url) as registry:  # reopening: no-op
        assert registry.get_version("digits", 1).version == 1
    engine = create_engine(normalize_url(log_url))
    with engine.connect() as conn:
        registry_versions = [r[0] for r in conn.execute(text("SELECT version FROM schema_version"))]
        log_versions = [r[0] for r in conn.execute(text(f"SELECT version FROM {VERSION_TABLE}"))]
    engine.dispose()
    assert log_versions == [1, 2, 3, 4, 5] and registry_versions[0] == 1 and len(registry_versions) >= 4


def test_the_migrated_tables_match_schema_py(log_url: str) -> None:
    InferenceLogStore.from_url(log_url).close()
    engine = create_engine(normalize_url(log_url))
    inspector = inspect(engine)
    for table in schema.metadata.sorted_tables:
        reflected = sorted((c["name"], bool(c["nullable"])) for c in inspector.get_columns(table.name))
        declared = sorted((c.name, bool(c.nullable)) for c in table.columns)
        assert reflected == declared, f"schema.py and migrations.py disagree on {table.name}"
        uniques = {u["name"] for u in inspector.get_unique_constraints(table.name)}
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        declared_uniques = {c.name for c in table.constraints if c.__class__.__name__ == "UniqueConstraint"}
        assert declared_uniques <= uniques
        assert {i.name for i in table.indexes} <= indexes
    engine.dispose()


def test_a_newer_log_schema_is_refused(log_url: str) -> None:
    InferenceLogStore.from_url(log_url).close()
    engine = create_engine(normalize_url(log_url))
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {VERSION_TABLE} VALUES (99, 'from the future', CURRENT_TIMESTAMP)"))
    engine.dispose()
    with pytest.raises(ConfigError, match="inference log schema is version 99, newer than this ingot"):
        InferenceLogStore.from_url(log_url)


def test_the_default_log_url_is_the_log_env_then_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INGOT_LOG_URL", raising=False)
    monkeypatch.setenv("INGOT_REGISTRY_URL", "postgresql://u@db/registry")
    assert default_log_url() == "postgresql://u@db/registry"
    monkeypatch.setenv("INGOT_LOG_URL", "sqlite:////tmp/log.db")
    assert default_log_url() == "sqlite:////tmp/log.db"


def test_an_unusable_log_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="inference log URL scheme 'mysql' is not supported"):
        InferenceLogStore.from_url("mysql://u@h/db")


def test_a_version_1_log_gains_client_ids_and_evidence_with_old_weight_rows_kept_as_evidence(log_url: str) -> None:
    """Migration 2 on a log with rows: weight rows the model answered (OK or an upstream failure)
    were random draws and stay evidence; sticky, pinned, mirrored, fallback rows and caller errors
    do not."""
    engine = open_engine(normalize_url(log_url))
    assert migrate(engine, HISTORY, target=1) == [1]
    cases = [("weight", "champion", "OK", True), ("weight", "challenger", "DEADLINE_EXCEEDED", True),
             ("weight", "challenger", "INVALID_ARGUMENT", False), ("sticky", "challenger", "OK", False),
             ("header", "challenger", "OK", False), ("fallback", "champion", "OK", False),
             ("mirror", "shadow", "OK", False)]
    with engine.begin() as conn:
        for i, (assignment, variant, status, _) in enumerate(cases):
            conn.execute(text(
                "INSERT INTO inference_log (request_id, row, ts, model, experiment, variant, assignment, model_version, "
                "signature, latency_ms, status) VALUES (:id, 0, CURRENT_TIMESTAMP, 'digits', 'e', :variant, "
                ":assignment, 1, 'serving_default', 1.0, :status)"),
                {"id": f"old-{i}", "variant": variant, "assignment": assignment, "status": status})
    assert migrate(engine, HISTORY, target=2) == [2]  # this test is about migration 2's backfill
    with engine.connect() as conn:
        found = {row.request_id: (bool(row.evidence), row.client_request_id) for row in conn.execute(
            text("SELECT request_id, evidence, client_request_id FROM inference_log"))}
    engine.dispose()
    assert found == {f"old-{i}": (expected, None) for i, (*_, expected) in enumerate(cases)}


def test_migration_5_adds_cache_hit_and_degraded_and_old_rows_are_neither(log_url: str) -> None:
    engine = open_engine(normalize_url(log_url))
    assert migrate(engine, HISTORY, target=4) == [1, 2, 3, 4]
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO inference_log (request_id, row, ts, model, variant, assignment, signature, latency_ms, status)"
            " VALUES ('r1', 0, CURRENT_TIMESTAMP, 'digits', 'champion', 'random', 'serving_default', 1.0, 'OK')"))
    assert migrate(engine, HISTORY) == [5]
    with engine.connect() as conn:
        row = conn.execute(text("SELECT cache_hit, degraded FROM inference_log WHERE request_id = 'r1'")).one()
    assert (bool(row[0]), row[1]) == (False, None)
    engine.dispose()
