"""train: the Model artifact (best-epoch Keras model + summary), its metadata, and the
training-curves page."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.components.tiny import CLASSES, RECIPE

# One worker runs every step test, so the session's ingest and training happen once.
pytestmark = pytest.mark.xdist_group("tiny-steps")


def test_train_step_writes_a_reloadable_model_and_its_summary(trained, ingested):
    from ingot.retrain import MODEL_FILE, TRAINING_JSON, load_trained

    model_dir, _, metadata = trained
    assert (model_dir / MODEL_FILE).is_file()
    summary = json.loads((model_dir / TRAINING_JSON).read_text())
    assert summary["data_hash"] == ingested[2]["data_hash"] == metadata["data_hash"]
    assert summary["class_names"] == CLASSES == metadata["class_names"]
    assert 1 <= metadata["epochs_run"] <= RECIPE["epochs"]
    assert 1 <= metadata["best_epoch"] <= metadata["epochs_run"]
    assert metadata["architecture"] == "cnn" and metadata["image_size"] == [20, 20]
    assert metadata["gpu_count"] == 0 and metadata["duration_s"] > 0
    assert "val_loss" in metadata["best_metrics"]

    reloaded = load_trained(model_dir)
    probabilities = reloaded.model.predict(np.zeros((2, 20, 20, 3), np.float32), verbose=0)
    assert probabilities.shape == (2, len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_training_curves_page_plots_every_epoch_and_marks_the_best(trained):
    _, curves_path, metadata = trained
    page = curves_path.read_text()
    assert page.count("<svg") == 2  # loss and accuracy
    polylines = re.findall(r'<polyline[^>]*points="([^"]+)"', page)
    assert len(polylines) == 4  # loss, val_loss, accuracy, val_accuracy
    assert all(len(points.split()) == metadata["epochs_run"] for points in polylines)
    assert page.count('<tr class="best">') == 1


def test_training_curves_html_scales_into_the_chart_and_skips_missing_series():
    from ingot.retrain import training_curves_html

    page = training_curves_html({"loss": [2.0, 1.0, 0.5], "accuracy": [0.2, 0.6, 0.9]}, best_epoch=3)
    assert page.count("<svg") == 2 and page.count("<polyline") == 2  # no validation series given
    for points in re.findall(r'points="([^"]+)"', page):
        xs, ys = zip(*(map(float, pair.split(",")) for pair in points.split()))
        assert xs[0] == 0.0 and xs[-1] == 320.0
        assert min(ys) == 0.0 and max(ys) == 160.0  # the extremes touch the chart's edges
    assert "best epoch 3" in page
    assert training_curves_html({}).count("<svg") == 0
