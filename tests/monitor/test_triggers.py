"""Triggers: the table their migration makes, cooldown and one run in flight held by the database
across racing processes, and runs really started locally and on (a loopback) Kubeflow Pipelines."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import inspect

from ingot.monitor.launch import Recipe
from ingot.monitor.triggers import (
    FAILED,
    KFP,
    LOCAL,
    RUNNING,
    STARTING,
    SUCCEEDED,
    Refusal,
    TriggerStore,
    drift_triggers,
)
from ingot.registry import Registry
from pipelines.launch import refresh, start_kfp
from tests.components.tiny import RECIPE
from tests.pipelines.kfp_api import fake_kfp_api


@pytest.fixture
def registry(database_url):
    with Registry.from_url(database_url) as opened:
        yield opened


def test_the_trigger_migration_makes_the_table_the_code_reads(registry):
    TriggerStore(registry.engine)  # opening the store migrates its table
    inspector = inspect(registry.engine)
    found = sorted((c["name"], bool(c["nullable"])) for c in inspector.get_columns("drift_triggers"))
    assert found == sorted((c.name, bool(c.nullable)) for c in drift_triggers.columns)
    assert "uq_drift_triggers_one_in_flight" in {i["name"] for i in inspector.get_indexes("drift_triggers")}


def test_one_in_flight_then_cooldown_then_a_new_trigger(registry):
    store = TriggerStore(registry.engine)
    first = store.claim("digits", reason="drift in confidence_ks", statistics={"rows": 500}, backend=LOCAL)
    assert first.state == STARTING and first.statistics == {"rows": 500}
    refused = store.claim("digits", reason="again", statistics={}, backend=LOCAL, cooldown=timedelta(0))
    assert isinstance(refused, Refusal) and "at most one run in flight" in refused.reason
    assert store.claim("other", reason="x", statistics={}, backend=KFP).model == "other"  # per model
    store.mark_running(first.id, run_id="local-1")
    store.finish(first.id, SUCCEEDED, "done")
    cooling = store.claim("digits", reason="again", statistics={}, backend=LOCAL)
    assert isinstance(cooling, Refusal) and cooling.reason.startswith("cooling down until")
    later = store.claim("digits", reason="again", statistics={}, backend=LOCAL,
                        now=first.created_at + timedelta(hours=25))
    assert not isinstance(later, Refusal) and later.id != first.id
    assert [t.id for t in store.history("digits")] == [later.id, first.id]


def test_a_trigger_names_what_fired_it(registry):
    store = TriggerStore(registry.engine)
    recorded = store.claim("digits", reason="x", statistics={"kinds": ["accuracy", "new labels"]}, backend=LOCAL)
    assert recorded.kinds == ["accuracy", "new labels"] and recorded.to_dict()["kinds"] == recorded.kinds
    store.finish(recorded.id, SUCCEEDED)
    # a trigger recorded before `kinds` was: read back from its tests, reason and new-label count
    older = store.claim("digits", reason="drift in confidence_ks; labelled accuracy below the gate's floor (...)",
                        statistics={"tests": [{"kind": "p-value", "advisory": False, "verdict": "drift"}],
                                    "new_labels": {"reached": False}}, backend=LOCAL, cooldown=timedelta(0))
    assert older.kinds == ["drift", "accuracy"]
    store.finish(older.id, SUCCEEDED)
    labels = store.claim("digits", reason="1200 new labelled production rows", backend=LOCAL, cooldown=timedelta(0),
                         statistics={"tests": [{"kind": "p-value", "advisory": True, "verdict": "drift"}],
                                     "new_labels": {"reached": True}})
    assert labels.kinds == ["new labels"]


_RACER = """
import json, sys, time
from datetime import timedelta
from ingot.registry import Registry
from ingot.monitor.triggers import TriggerStore, Refusal
url, start, cooldown = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
with Registry.from_url(url) as registry:
    store = TriggerStore(registry.engine)
    while time.time() < start:
        time.sleep(0.001)
    got = store.claim("digits", reason="race", statistics={}, backend="local", cooldown=timedelta(seconds=cooldown))
    print(json.dumps(None if isinstance(got, Refusal) else got.id))
"""


def _race(url: str, processes: int, cooldown: float) -> list[int]:
    start = time.time() + 4.0  # every racer has imported and connected by then
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, url, str(start), str(cooldown)],
                               stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in racers]
    assert all(p.returncode == 0 for p in racers)
    return [r for r in results if r is not None]


def test_racing_monitors_start_at_most_one_run_and_a_failed_run_releases_the_slot(registry, database_url):
    winners = _race(database_url, 3, cooldown=0)
    assert len(winners) == 1
    store = TriggerStore(registry.engine)
    assert _race(database_url, 2, cooldown=0) == []  # still in flight
    store.finish(winners[0], FAILED, "step 'train' failed")
    again = _race(database_url, 3, cooldown=0)
    assert len(again) == 1 and again != winners  # the failed run released the slot
    store.finish(again[0], SUCCEEDED)
    assert _race(database_url, 2, cooldown=3600) == []  # cooling down
    assert store.count("digits") == 2


def test_the_cluster_trigger_submits_the_champions_recipe_and_follows_the_run(registry):
    store = TriggerStore(registry.engine)
    card = {"training_config": RECIPE, "gate": {"thresholds": {"min_accuracy": 0.8, "min_class_f1": 0.5,
                                                                 "max_regression": 0.02}}}
    claimed = store.claim("tiny", reason="drift", statistics={}, backend=KFP)
    with fake_kfp_api() as kfp_api:
        started = start_kfp(store, claimed, Recipe.from_card(card), host=kfp_api.url, dataset_uri="gs://b/data",
                            experiment="ingot-drift")
        assert (started.state, started.run_id) == (RUNNING, kfp_api.run_id)
        (run,) = kfp_api.runs()
        parameters = run["runtime_config"]["parameters"]
        assert parameters["dataset_uri"] == "gs://b/data" and parameters["model_name"] == "tiny"
        assert parameters["recipe"]["epochs"] == RECIPE["epochs"] and parameters["min_accuracy"] == 0.8
        assert "drift trigger #" in run["display_name"]
        assert refresh(store, started).state == RUNNING
        # a KFP run's records carry its run id: the version links back to this trigger
        assert store.for_run("tiny", kfp_api.run_id).id == claimed.id and store.for_run("other", kfp_api.run_id) is None
        kfp_api.run_states[kfp_api.run_id] = "FAILED"
        assert refresh(store, started).state == FAILED
        assert store.in_flight("tiny") is None

        refused = store.claim("tiny", reason="drift", statistics={}, backend=KFP, cooldown=timedelta(0))
        kfp_api.fail_runs_with = 400
        with pytest.raises(Exception, match="HTTP 400"):
            start_kfp(store, refused, Recipe.from_card(card), host=kfp_api.url, dataset_uri="")
        assert store.get(refused.id).state == FAILED and "HTTP 400" in store.get(refused.id).detail


def test_the_cluster_trigger_trains_on_production_data_through_the_build_step(registry):
    """The same policy a local trigger builds before its run goes to KFP as the `production`
    parameter, its window ending at the trigger's time; the log URL (a password) never leaves."""
    from datetime import UTC, datetime

    from ingot.retrain.production import ProductionData

    store = TriggerStore(registry.engine)
    card = {"training_config": RECIPE, "gate": {"thresholds": {"min_accuracy": 0.8, "min_class_f1": 0.5,
                                                                 "max_regression": 0.02, "int8_max_loss": 0.01}}}
    production = ProductionData(capture_url="s3://capture/prod", log_url="postgresql://ingot:s3cret@db/log",
                                production_weight=3, holdout_fraction=0.25, window_s=86400.0, max_rows=1000)
    claimed = store.claim("tiny", reason="drift", statistics={}, backend=KFP)
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    with fake_kfp_api() as kfp_api:
        start_kfp(store, claimed, Recipe.from_card(card), host=kfp_api.url, dataset_uri="gs://b/data",
                  production=production, now=now)
        (run,) = kfp_api.runs()
    parameters = run["runtime_config"]["parameters"]
    assert parameters["production"] == {"capture_url": "s3://capture/prod", "production_weight": 3,
                                        "holdout_fraction": 0.25, "window_s": 86400.0, "max_rows": 1000,
                                        "until": "2026-12-03T12:00:00+00:00"}
    assert ProductionData.from_parameter(parameters["production"]).window_end() == now
    assert parameters["int8_max_loss"] == 0.01  # the champion's recipe gate, int8 tolerance included
    assert "s3cret" not in json.dumps(run)


@pytest.mark.slow
@pytest.mark.xdist_group("pipeline-local-runs")
def test_the_local_trigger_really_runs_the_pipeline_in_the_background_and_records_it(tmp_path):
    from pipelines.launch import start_local
    from tests.components.tiny import BLESSING, write_image_folder

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    folder = write_image_folder(tmp_path / "images")
    card = {"training_config": RECIPE, "gate": {"thresholds": BLESSING}}
    with Registry.from_url(url) as registry:
        store = TriggerStore(registry.engine)
        claimed = store.claim("tiny", reason="drift in confidence_ks", statistics={}, backend=LOCAL)
        started = start_local(store, claimed, Recipe.from_card(card), db_url=url, dataset_uri=str(folder),
                              registry_url=url, model_repository=str(tmp_path / "repo"), work_dir=tmp_path / "runs")
        assert started.state == RUNNING and started.run_id.startswith(f"local-{claimed.id}-") and started.pid
        deadline = time.monotonic() + 600
        while (current := refresh(store, store.get(claimed.id))).state == RUNNING and time.monotonic() < deadline:
            time.sleep(2)
        log = open(started.log_path).read()
        assert current.state == SUCCEEDED, log[-3000:]
        pipeline_run_id = current.detail.split()[2].rstrip(":")
        (record,) = registry.by_pipeline_run(pipeline_run_id)
        assert record.name == "tiny" and record.version == 1 and record.config["epochs"] == RECIPE["epochs"]
        assert "blessed" in current.detail and '"pipeline_run_id"' in log
        assert store.in_flight("tiny") is None
        # what the run registered is recorded, so the version links back to this trigger
        assert (current.pipeline_run_id, current.record_id, current.version) == (pipeline_run_id, record.id, 1)
        assert pipeline_run_id != current.run_id and store.for_run("tiny", pipeline_run_id).id == claimed.id
