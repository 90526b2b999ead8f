"""evaluate: test-split metrics, the gate (floors and the registry's champion), the records it
writes, the export of a blessed model, and the component body's Metrics/ClassificationMetrics."""

from __future__ import annotations

import json

import pytest

from tests.components.tiny import CLASSES, REJECTING, TWINS

# One worker runs every step test, so the session's ingest and training happen once.
pytestmark = pytest.mark.xdist_group("tiny-steps")


def test_blessed_model_is_exported_with_a_full_model_card(blessed, ingested):
    from ingot import repository

    result, paths = blessed
    assert result.blessed is True and result.summary.startswith("BLESSED")
    serving = paths["serving_model_dir"]
    assert (serving / "saved_model.pb").is_file()
    card = repository.read_model_card(str(serving))
    assert card["name"] == "tiny" and card["pipeline_run_id"] == "run-blessed"
    assert card["data_hash"] == ingested[2]["data_hash"]
    assert card["gate"]["blessed"] is True and card["class_names"] == CLASSES
    assert card["metrics"]["accuracy"] == pytest.approx(result.scalars["accuracy"])


def test_evaluation_record_and_per_class_table(blessed, ingested):
    from ingot.retrain import EVALUATION_FORMAT, read_evaluation_record

    result, paths = blessed
    record = read_evaluation_record(paths["evaluation_json"])
    assert record["format"] == EVALUATION_FORMAT and record["model_name"] == "tiny"
    assert record["data_hash"] == ingested[2]["data_hash"] and record["pipeline_run_id"] == "run-blessed"
    assert record["decision"]["blessed"] is True and record["champion_metrics"] is None
    assert record["config"]["image_size"] == [20, 20] and record["training"]["epochs_run"] >= 1
    assert result.record == record

    test_size = sum(sum(row) for row in result.confusion_matrix)
    assert len(result.confusion_matrix) == len(CLASSES) == len(result.class_names)
    assert test_size == record["metrics"]["num_examples"]
    assert {f"f1_{name}" for name in CLASSES} <= set(result.scalars)

    table = paths["per_class_markdown"].read_text()
    assert table.startswith("## tiny: BLESSED")
    assert "No champion yet" in table
    for name in CLASSES:
        assert f"| {name} |" in table


def test_a_class_below_its_floor_rejects_and_nothing_is_exported(ingested, trained, tiny_config, evaluation_dirs, tmp_path):
    from ingot.evaluate import GateThresholds
    from ingot.retrain import evaluate_step

    paths = evaluation_dirs("rejected")
    result = evaluate_step(
        ingested[0], trained[0], tiny_config, GateThresholds(**REJECTING), model_name="tiny",
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}", pipeline_run_id="run-rejected", **paths,
    )
    assert result.blessed is False
    assert not paths["serving_model_dir"].exists()
    reasons = result.record["decision"]["reasons"]
    assert any(f"class '{twin}' F1" in reason and "below the floor 0.9500" in reason
               for twin in TWINS for reason in reasons)
    table = paths["per_class_markdown"].read_text()
    assert table.startswith("## tiny: REJECTED") and "**below**" in table
    assert "- class 'twin_" in table


def test_the_champion_comes_from_the_registry(ingested, trained, tiny_config, evaluation_dirs, tmp_path):
    from ingot.evaluate import GateThresholds
    from ingot.registry import Registry
    from ingot.retrain import champion_metrics_from_registry, evaluate_step

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    assert champion_metrics_from_registry(url, "tiny") is None  # never registered: nothing to beat
    perfect = {"accuracy": 1.0, "macro_f1": 1.0}
    with Registry.from_url(url) as registry:
        registry.register_version("tiny", version=1, artifact_uri=str(tmp_path), model_sha256="ab" * 32,
                                  metrics=perfect, gate={"blessed": True, "reasons": []})
        registry.mark_ready("tiny", 1, verify=lambda uri, sha: True)
    assert champion_metrics_from_registry(url, "tiny") == perfect

    paths = evaluation_dirs("champion")
    result = evaluate_step(
        ingested[0], trained[0], tiny_config, GateThresholds(min_accuracy=0.0, min_class_f1=0.0, max_regression=0.01),
        model_name="tiny", registry_url=url, pipeline_run_id="run-vs-champion", **paths,
    )
    # The twins cap accuracy well below 1.0, so the candidate regresses against the perfect champion.
    assert result.blessed is False
    assert result.record["champion_metrics"] == perfect
    assert any("from the champion's 1.0000" in reason for reason in result.record["decision"]["reasons"])
    assert "Champion: accuracy 1.0000" in paths["per_class_markdown"].read_text()


def test_component_body_logs_metrics_and_the_confusion_matrix(ingested, trained, tiny_config, tmp_path):
    from kfp import dsl

    from components.evaluate.component import evaluate
    from ingot.retrain import config_parameter

    def artifact(kind, name):
        return kind(name=name, uri=str(tmp_path / name))

    metrics = artifact(dsl.Metrics, "metrics")
    matrix = artifact(dsl.ClassificationMetrics, "confusion_matrix")
    serving = artifact(dsl.Model, "serving_model")
    blessed, decision = evaluate(
        dataset=dsl.Dataset(name="dataset", uri=str(ingested[0])),
        model=dsl.Model(name="model", uri=str(trained[0])), config=config_parameter(tiny_config),
        model_name="tiny", **REJECTING, registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        pipeline_run_id="run-body", metrics=metrics, confusion_matrix=matrix,
        per_class_report=artifact(dsl.Markdown, "per_class_report"), evaluation=artifact(dsl.Artifact, "evaluation"),
        serving_model=serving,
    )
    assert blessed is False and decision.startswith("REJECTED")
    assert 0.0 <= metrics.metadata["accuracy"] <= 1.0 and "f1_twin_a" in metrics.metadata
    confusion = matrix.metadata["confusionMatrix"]
    assert [c["displayName"] for c in confusion["annotationSpecs"]] == CLASSES
    assert len(confusion["rows"]) == len(CLASSES)
    assert json.loads((tmp_path / "evaluation").read_text())["pipeline_run_id"] == "run-body"
    assert serving.metadata == {"exported": False, "reason": "not blessed by the gate"}
    assert (tmp_path / "serving_model").is_dir() and not any((tmp_path / "serving_model").iterdir())

