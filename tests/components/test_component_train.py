"""train: the Model artifact (best-epoch Keras model + summary), its metadata, and the
training-curves page."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from tests.components.tiny import CLASSES, RECIPE

# One worker runs every step test, so the session's ingest and training happen once.
pytestmark = pytest.mark.xdist_group("tiny-steps")


def test_train_step_writes_a_reloadable_model_and_its_summary(trained, ingested):
    from ingot.train.artifact import MODEL_FILE, TRAINING_JSON, load_trained

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
    images = re.findall(r'<figure class="plot" id="plot-([^"]+)"><img src="data:image/png;base64,([^"]+)"', page)
    assert [name for name, _ in images] == ["training-curves"]  # one image per plot
    with Image.open(io.BytesIO(base64.b64decode(images[0][1]))) as png:
        assert png.format == "PNG"
    assert page.count('<tr class="best">') == 1
    assert len(re.findall(r"<tr(?: class=\"best\")?><td>\d+</td>", page)) == metadata["epochs_run"]


def test_training_curves_figure_has_axes_ticks_and_the_restored_best_epoch():
    from ingot.reports import training_curves_figure, training_curves_html

    history = {"loss": [2.0, 1.0, 0.5, 0.6], "val_loss": [2.1, 1.2, 0.7, 0.9],
               "accuracy": [0.2, 0.6, 0.9, 0.91], "val_accuracy": [0.2, 0.5, 0.8, 0.79]}
    figure = training_curves_figure(history, best_epoch=3)
    loss, accuracy = figure.axes
    for ax, title in ((loss, "loss"), (accuracy, "accuracy")):
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == title
        assert [line.get_label() for line in ax.get_lines()] == ["training", "validation", "best epoch 3 (restored)"]
        assert list(ax.get_lines()[0].get_xdata()) == [1, 2, 3, 4]
        assert list(ax.get_lines()[2].get_xdata()) == [3, 3]  # the vertical marker at the best epoch
        assert all(float(tick).is_integer() for tick in ax.get_xticks())  # whole epochs only
    only_training = training_curves_figure({"loss": [2.0, 1.0]})
    assert [line.get_label() for line in only_training.axes[0].get_lines()] == ["training"]
    assert "<img" not in training_curves_html({})  # nothing to plot: no empty figure


@pytest.mark.slow
def test_train_step_with_two_workers_runs_them_locally_off_a_cluster(ingested, tiny_config, tmp_path, monkeypatch):
    """workers > 1 and no cluster (kfp's local runner): the step starts local worker processes
    and writes the chief's model as its Model artifact, with the same metadata as one process."""
    from components.steps import train_step
    from ingot.train.artifact import MODEL_FILE, load_trained

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = tiny_config.with_overrides(["distribution=multi_worker", "workers=2", "epochs=2"])
    metadata = train_step(ingested[0], config, tmp_path / "model", tmp_path / "curves.html")
    assert (tmp_path / "model" / MODEL_FILE).is_file()
    assert metadata["epochs_run"] == 2 and metadata["data_hash"] == ingested[2]["data_hash"]
    summary = load_trained(tmp_path / "model").summary
    assert summary["hardware"]["strategy"] == "CollectiveAllReduceStrategy"
    assert summary["config"]["workers"] == 2
    assert '<figure class="plot" id="plot-training-curves">' in (tmp_path / "curves.html").read_text()
