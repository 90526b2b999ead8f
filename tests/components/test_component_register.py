"""register and reject: lineage in the registry, READY only after checksums verify, champion
then candidate, rejections with their reasons, and retries that add nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingot.errors import ConfigError, DataError, ModelError
from ingot.registry import Registry, Stage, Status

# One worker runs every step test, so the session's ingest and training happen once.
pytestmark = pytest.mark.xdist_group("tiny-steps")


@pytest.fixture
def registry_url(tmp_path):
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def published(blessed, tmp_path):
    from components.steps import publish_step

    return publish_step(blessed[1]["serving_model_dir"], str(tmp_path / "repo"), "tiny")


def _register(blessed, published, registry_url, run_id="run-1"):
    from components.steps import register_step

    return register_step(
        blessed[1]["evaluation_json"], registry_url=registry_url, model_name="tiny", version=published.version,
        artifact_uri=published.path, model_sha256=published.model_sha256, pipeline_run_id=run_id,
    )


def test_first_blessed_version_is_registered_ready_as_champion_with_lineage(blessed, published, registry_url, ingested):
    record = _register(blessed, published, registry_url)
    assert (record.version, record.status, record.stage) == (1, Status.READY, Stage.CHAMPION)
    assert record.artifact_uri == published.path and record.model_sha256 == published.model_sha256
    assert record.data_hash == ingested[2]["data_hash"]
    assert record.pipeline_run_id == "run-1"
    assert record.config["image_size"] == [20, 20]
    assert record.metrics["accuracy"] == pytest.approx(blessed[0].scalars["accuracy"])
    assert record.blessed


def test_a_retried_register_returns_the_same_record(blessed, published, registry_url):
    first = _register(blessed, published, registry_url)
    retry = _register(blessed, published, registry_url)
    assert retry.id == first.id and retry.stage is Stage.CHAMPION
    with Registry.from_url(registry_url) as registry:
        assert [r.version for r in registry.list_versions("tiny")] == [1]
        assert len(registry.events("tiny", 1)) == 1  # one stage change: (new) -> champion


def test_a_later_blessed_version_becomes_a_candidate_judged_against_the_champion(
    blessed, published, registry_url, ingested, trained, tiny_config, evaluation_dirs, tmp_path
):
    import keras
    import numpy as np

    from components.steps import evaluate_step, publish_step, register_step
    from ingot.evaluate.gate import GateThresholds
    from ingot.train.artifact import MODEL_FILE, TRAINING_JSON

    _register(blessed, published, registry_url)
    # A second model: the first one's weights nudged, so its SavedModel (and sha256) differ.
    model = keras.models.load_model(trained[0] / MODEL_FILE)
    weights = model.get_weights()
    weights[-1] = weights[-1] + np.float32(1e-3)
    model.set_weights(weights)
    second_dir = tmp_path / "model-2"
    second_dir.mkdir()
    model.save(second_dir / MODEL_FILE)
    (second_dir / TRAINING_JSON).write_text((trained[0] / TRAINING_JSON).read_text())

    paths = evaluation_dirs("second")
    result = evaluate_step(ingested[0], second_dir, tiny_config,
                           GateThresholds(min_accuracy=0.0, min_class_f1=0.0, max_regression=1.0),
                           model_name="tiny", registry_url=registry_url, pipeline_run_id="run-2", **paths)
    with Registry.from_url(registry_url) as registry:
        champion_accuracy = registry.champion("tiny").metrics["accuracy"]
    assert result.blessed and result.record.champion_metrics["accuracy"] == champion_accuracy
    assert {c["name"] for c in result.record.gate["checks"]} >= {"accuracy_vs_champion", "macro_f1_vs_champion"}
    second = publish_step(paths["serving_model_dir"], str(tmp_path / "repo"), "tiny")
    assert (second.version, second.created) == (2, True)
    record = register_step(paths["evaluation_json"], registry_url=registry_url, model_name="tiny", version=2,
                           artifact_uri=second.path, model_sha256=second.model_sha256, pipeline_run_id="run-2")
    assert (record.status, record.stage) == (Status.READY, Stage.CANDIDATE)
    with Registry.from_url(registry_url) as registry:
        assert registry.champion("tiny").version == 1


def test_a_tampered_artifact_is_marked_failed_never_ready(blessed, published, registry_url):
    variables = Path(published.path) / "variables"
    victim = sorted(variables.iterdir())[0]
    with victim.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelError, match="failed artifact verification"):
        _register(blessed, published, registry_url)
    with Registry.from_url(registry_url) as registry:
        record = registry.get_version("tiny", 1)
        assert record.status is Status.FAILED and record.stage is None
        assert "MANIFEST.sha256" in record.status_reason


def test_register_step_verifier_checks_the_registered_digest(published):
    from ingot.registry import repository_verifier

    assert repository_verifier(published.path, published.model_sha256)
    with pytest.raises(ModelError, match="not the registered"):
        repository_verifier(published.path, "0" * 64)


def test_rejection_is_recorded_with_its_reasons_once_per_run(ingested, trained, tiny_config, evaluation_dirs, registry_url):
    from components.steps import evaluate_step, reject_step
    from ingot.evaluate.gate import GateThresholds
    from tests.components.tiny import REJECTING

    paths = evaluation_dirs("to-reject")
    result = evaluate_step(ingested[0], trained[0], tiny_config, GateThresholds(**REJECTING), model_name="tiny",
                           registry_url=registry_url, pipeline_run_id="run-r", **paths)
    record = reject_step(paths["evaluation_json"], registry_url=registry_url, model_name="tiny", pipeline_run_id="run-r")
    retry = reject_step(paths["evaluation_json"], registry_url=registry_url, model_name="tiny", pipeline_run_id="run-r")

    assert retry.id == record.id
    assert (record.version, record.stage, record.status) == (None, Stage.REJECTED, Status.FAILED)
    assert record.reasons == result.record.gate["reasons"] and record.reasons
    assert record.data_hash == ingested[2]["data_hash"] and record.pipeline_run_id == "run-r"
    with Registry.from_url(registry_url) as registry:
        assert len(registry.list_versions("tiny")) == 1
        assert registry.champion("tiny") is None
        (event,) = registry.record_events(record.id)
        assert event.to_stage is Stage.REJECTED and "below the floor" in event.reason


def test_steps_refuse_foreign_files_and_unknown_registries(tmp_path, registry_url):
    from components.steps import reject_step
    from ingot.evaluate.record import EvaluationRecord
    from ingot.retrain.registry import open_registry

    stray = tmp_path / "stray.json"
    stray.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(DataError, match="stray.json has format None; expected 'ingot.evaluation/v2'"):
        EvaluationRecord.read(stray)
    with pytest.raises(DataError, match="cannot read"):
        reject_step(tmp_path / "missing.json", registry_url=registry_url, model_name="tiny", pipeline_run_id="r")
    with pytest.raises(ConfigError, match="registry URL scheme 'mysql'"):
        open_registry("mysql://nope/db")


def test_component_bodies_return_the_registry_record_as_json(blessed, published, registry_url):
    from kfp import dsl

    from components.register.component import register

    evaluation = dsl.Artifact(name="evaluation", uri=str(blessed[1]["evaluation_json"]))
    output = json.loads(register(
        evaluation=evaluation, model_name="tiny", version=published.version, artifact_uri=published.path,
        model_sha256=published.model_sha256, created=True, registry_url=registry_url, pipeline_run_id="run-c",
    ))
    assert output["version"] == 1 and output["stage"] == "champion" and output["status"] == "READY"
    assert output["published_created"] is True and output["pipeline_run_id"] == "run-c"


def test_one_machine_registry_defaults_to_the_environment_then_the_data_dir(tmp_path, monkeypatch):
    from ingot.retrain.registry import open_registry

    monkeypatch.setenv("INGOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INGOT_REGISTRY_URL", f"sqlite:///{tmp_path / 'env.db'}")
    with open_registry(None, required=False) as registry:
        assert registry.url == f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.delenv("INGOT_REGISTRY_URL")
    with open_registry("", required=False) as registry:
        assert registry.url == f"sqlite:///{tmp_path / 'data' / 'registry.db'}"
    with pytest.raises(ConfigError, match="no registry given"):
        open_registry("")  # a pipeline step: no silent SQLite default inside a pod
