"""evaluate: test-split metrics, the gate (floors and the registry's champion), the records it
writes, the export of a blessed model, and the component body's Metrics/ClassificationMetrics."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import pytest
from PIL import Image

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
    # The int8 model was built and judged on the same test rows as the float one, and the
    # model.tflite is there exactly when the card says it shipped.
    int8 = card["int8"]
    assert int8["test_rows"] == card["metrics"]["num_examples"]
    assert int8["float_accuracy"] == pytest.approx(card["metrics"]["accuracy"])
    assert 0 < int8["calibration_images"] <= 300 and int8["max_loss"] == 0.005  # the default tolerance
    assert (serving / "model.tflite").is_file() == int8["shipped"]
    assert int8["shipped"] == (int8["difference"] >= -0.005)


class _Page(HTMLParser):
    """The plots (embedded PNGs) and tables of an HTML report."""

    def __init__(self) -> None:
        super().__init__()
        self.plots: dict[str, bytes] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._figure: str | None = None
        self._table: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure" and attrs.get("id", "").startswith("plot-"):
            self._figure = attrs["id"][len("plot-"):]
        elif tag == "img" and self._figure:
            prefix = "data:image/png;base64,"
            assert attrs["src"].startswith(prefix)
            self.plots[self._figure] = base64.b64decode(attrs["src"][len(prefix):])
        elif tag == "table":
            self._table = attrs.get("class", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td" and self._table is not None:
            self.tables[self._table][-1].append("")

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._table is not None and self.tables[self._table] and self.tables[self._table][-1] is not None:
            row = self.tables[self._table][-1]
            if row:
                row[-1] += data


def parse_page(path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def test_evaluation_record_and_report(blessed, ingested):
    from ingot.evaluate.record import EVALUATION_FORMAT, EvaluationRecord

    result, paths = blessed
    record = EvaluationRecord.read(paths["evaluation_json"])
    assert record.format == EVALUATION_FORMAT and record.model_name == "tiny"
    assert record.data_hash == ingested[2]["data_hash"] and record.pipeline_run_id == "run-blessed"
    assert record.gate["blessed"] is True and record.champion_metrics is None
    assert record.training_config["image_size"] == [20, 20] and record.training["epochs_run"] >= 1
    assert result.record == record

    test_size = sum(sum(row) for row in result.confusion_matrix)
    assert len(result.confusion_matrix) == len(CLASSES) == len(result.class_names)
    assert test_size == record.metrics["num_examples"]
    assert {f"f1_{name}" for name in CLASSES} <= set(result.scalars)

    page = parse_page(paths["report_html"])
    text = paths["report_html"].read_text()
    assert "tiny: BLESSED" in text and "No champion yet" in text
    # One image per plot: the confusion-matrix heatmap and the per-class bars, real PNGs.
    assert set(page.plots) == {"confusion-matrix", "per-class"}
    for png in page.plots.values():
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.size[0] > 200
    cells = [row for row in page.tables["confusion"] if row]
    assert len(cells) == len(CLASSES) and all(len(row) == len(CLASSES) for row in cells)  # C x C
    assert [[int(c) for c in row] for row in cells] == result.confusion_matrix
    assert [row[0] for row in page.tables["per-class"] if row] == CLASSES


def test_the_model_card_and_the_registry_are_built_from_the_record(blessed):
    from ingot import repository
    from ingot.evaluate.record import EvaluationRecord

    _, paths = blessed
    record = EvaluationRecord.read(paths["evaluation_json"])
    card = repository.read_model_card(str(paths["serving_model_dir"]))
    for key, value in record.model_card().items():
        assert card[key] == value, key
    fields = record.registry_fields()
    assert fields["config"] is record.training_config and fields["gate"] is record.gate
    record.extra_sections["drift_baseline"] = {"bins": 3}  # another part's section reaches the card
    assert record.model_card()["drift_baseline"] == {"bins": 3}
    assert EvaluationRecord.from_dict(record.to_dict()) == record


def test_a_class_below_its_floor_rejects_and_nothing_is_exported(ingested, trained, tiny_config, evaluation_dirs, tmp_path):
    from components.steps import evaluate_step
    from ingot.evaluate.gate import GateThresholds

    paths = evaluation_dirs("rejected")
    result = evaluate_step(
        ingested[0], trained[0], tiny_config, GateThresholds(**REJECTING), model_name="tiny",
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}", pipeline_run_id="run-rejected", **paths,
    )
    assert result.blessed is False
    assert not paths["serving_model_dir"].exists()
    reasons = result.record.gate["reasons"]
    assert any(f"class '{twin}' F1" in reason and "below the floor 0.9500" in reason
               for twin in TWINS for reason in reasons)
    text = paths["report_html"].read_text()
    assert "tiny: REJECTED" in text and "<li>class &#x27;twin_" in text
    verdicts = {row[0]: row[-1] for row in parse_page(paths["report_html"]).tables["per-class"] if row}
    assert {verdicts[twin] for twin in TWINS} == {"below"}


def _register_champion(url, artifact_uri, metrics):
    from ingot.registry import Registry

    with Registry.from_url(url) as registry:
        assert registry.champion_metrics("tiny") is None  # never registered: nothing to beat
        registry.register_version("tiny", version=1, artifact_uri=str(artifact_uri), model_sha256="ab" * 32,
                                  metrics=metrics, gate={"blessed": True, "reasons": []})
        registry.mark_ready("tiny", 1, verify=lambda uri, sha: True)
        assert registry.champion_metrics("tiny") == metrics


def test_the_champion_is_rescored_on_the_same_rows_not_taken_from_its_card(
    blessed, ingested, trained, tiny_config, evaluation_dirs, tmp_path
):
    """The champion's card claims perfect scores; re-scored from its SavedModel (the same model)
    on the candidate's test rows it ties, so the paired gate blesses and records the comparison."""
    from components.steps import evaluate_step
    from ingot.evaluate.gate import GateThresholds

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    perfect = {"accuracy": 1.0, "macro_f1": 1.0}
    _register_champion(url, blessed[1]["serving_model_dir"], perfect)
    paths = evaluation_dirs("champion")
    result = evaluate_step(
        ingested[0], trained[0], tiny_config, GateThresholds(min_accuracy=0.0, min_class_f1=0.0, max_regression=0.01),
        model_name="tiny", registry_url=url, pipeline_run_id="run-vs-champion", **paths,
    )
    assert result.blessed is True
    comparisons = result.record.gate["comparisons"]
    assert set(comparisons) == {"accuracy", "macro_f1"}
    assert comparisons["accuracy"]["difference"] == 0.0 and comparisons["accuracy"]["regressed"] is False
    assert result.record.model_card()["gate"]["comparisons"] == comparisons
    assert result.record.registry_fields()["gate"]["comparisons"] == comparisons
    page = paths["report_html"].read_text()
    assert "Champion: accuracy 1.0000" in page
    paired = {row[0]: row for row in parse_page(paths["report_html"]).tables["paired"] if row}
    assert paired["accuracy"][3] == "+0.0000" and paired["accuracy"][-1] == "ok"


def test_a_champion_missing_from_the_repository_is_a_clear_error(ingested, trained, tiny_config, evaluation_dirs, tmp_path):
    from components.steps import evaluate_step
    from ingot.errors import ModelError
    from ingot.evaluate.gate import GateThresholds

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    _register_champion(url, tmp_path / "gone", {"accuracy": 1.0, "macro_f1": 1.0})
    with pytest.raises(ModelError, match="champion tiny version 1 .* cannot be loaded from the model repository"):
        evaluate_step(
            ingested[0], trained[0], tiny_config, GateThresholds(min_accuracy=0.0, min_class_f1=0.0),
            model_name="tiny", registry_url=url, pipeline_run_id="run-gone", **evaluation_dirs("gone"),
        )


def test_component_body_logs_metrics_and_the_confusion_matrix(ingested, trained, tiny_config, tmp_path):
    from kfp import dsl

    from components.evaluate.component import evaluate
    from ingot.retrain.config import config_parameter

    def artifact(kind, name):
        return kind(name=name, uri=str(tmp_path / name))

    metrics = artifact(dsl.Metrics, "metrics")
    matrix = artifact(dsl.ClassificationMetrics, "confusion_matrix")
    serving = artifact(dsl.Model, "serving_model")
    blessed, decision = evaluate(
        dataset=dsl.Dataset(name="dataset", uri=str(ingested[0])),
        model=dsl.Model(name="model", uri=str(trained[0])), config=config_parameter(tiny_config),
        model_name="tiny", **REJECTING, int8_max_loss=0.005, registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        pipeline_run_id="run-body", metrics=metrics, confusion_matrix=matrix,
        evaluation_report=artifact(dsl.HTML, "evaluation_report"), evaluation=artifact(dsl.Artifact, "evaluation"),
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

