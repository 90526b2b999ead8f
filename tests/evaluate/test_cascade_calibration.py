"""Choosing a cascade's threshold: the exact curve on a hand-made case (ties included), the lowest
threshold within the stated loss, and `ingot cascade calibrate` on real SavedModels and a real
Dataset artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingot.errors import ConfigError
from ingot.evaluate.cascade import calibrate


def _probabilities(top1: list[float], predicted: list[int], classes: int = 3) -> np.ndarray:
    out = np.zeros((len(top1), classes))
    for i, (p, c) in enumerate(zip(top1, predicted)):
        out[i] = (1 - p) / (classes - 1)
        out[i, c] = p
    return out


LABELS = [0, 0, 1, 1, 2]
# Small: row 0 sure and right, row 1 sure and wrong, row 2 right, rows 3 and 4 tie at 0.6 (right, wrong).
SMALL = _probabilities([0.95, 0.9, 0.8, 0.6, 0.6], [0, 1, 1, 1, 0])
# Full: right on rows 0-3, wrong on row 4: 80 %.
FULL = _probabilities([0.7, 0.7, 0.7, 0.7, 0.7], [0, 0, 1, 1, 1])


def test_the_curve_is_exact_with_ties_and_the_lowest_threshold_within_the_loss_is_chosen():
    result = calibrate(SMALL, FULL, LABELS, max_loss_points=0.5)
    assert result.full_accuracy == pytest.approx(0.8) and result.small_accuracy == pytest.approx(0.6)
    assert [(p.threshold, p.coverage, round(p.accuracy, 6)) for p in result.curve] == [
        (0.95, 0.2, 0.8), (0.9, 0.4, 0.6), (0.8, 0.6, 0.6), (0.6, 1.0, 0.6)]  # the tie lets both rows through
    assert result.chosen is not None and (result.chosen.threshold, result.chosen.coverage) == (0.95, 0.2)
    assert result.chosen.loss_points == pytest.approx(0.0) and result.chosen.small_accuracy_answered == 1.0
    loose = calibrate(SMALL, FULL, LABELS, max_loss_points=20)
    assert loose.chosen is not None and (loose.chosen.threshold, loose.chosen.coverage) == (0.6, 1.0)
    assert loose.point_at(0.85).coverage == 0.4 and loose.point_at(0.99).coverage == 0.0
    assert loose.point_at(0.99).accuracy == pytest.approx(0.8)


def test_a_dip_back_under_the_bound_after_a_breach_is_not_taken():
    # Full right on rows 0-1, wrong on row 2; the small model right on rows 0 and 2, wrong on row 1.
    small = _probabilities([0.9, 0.8, 0.7], [0, 1, 0])
    full = _probabilities([0.6, 0.6, 0.6], [0, 0, 1])
    result = calibrate(small, full, [0, 0, 0], max_loss_points=0.5)
    assert [round(p.loss_points, 4) for p in result.curve] == [0.0, 33.3333, 0.0]
    assert result.chosen is not None and result.chosen.threshold == 0.9  # not 0.7, past the breach at 0.8


def test_no_threshold_within_the_loss_chooses_none():
    bad_small = _probabilities([0.99, 0.99, 0.99, 0.99, 0.99], [2, 2, 2, 2, 0])
    result = calibrate(bad_small, FULL, LABELS)
    assert result.chosen is None and result.as_json()["threshold"] is None


def test_mismatched_inputs_are_refused():
    with pytest.raises(ConfigError, match="same N labelled rows"):
        calibrate(SMALL, FULL[:4], LABELS)
    with pytest.raises(ConfigError, match="maximum accuracy loss"):
        calibrate(SMALL, FULL, LABELS, max_loss_points=-1)


@pytest.fixture(scope="module")
def colour_world(tmp_path_factory):
    """A Dataset artifact of colour images and a repository with versions 1 (trained) and 2 (untrained)."""
    from ingot.data.dataset import LabelledImages
    from ingot.data.records import write_dataset_artifact
    from ingot.data.splits import split_dataset
    from tests.serving.support import CLASSES, MODEL, colour_images, export, publish, tiny_model

    root = tmp_path_factory.mktemp("cascade")
    labels = np.tile(np.arange(len(CLASSES)), 40)
    data = LabelledImages(class_names=list(CLASSES), labels=labels, images=colour_images(labels, seed=21))
    dataset = str(root / "dataset")
    write_dataset_artifact(split_dataset(data, validation_fraction=0.25, test_fraction=0.25, seed=3), dataset)
    repository = root / "repo"
    assert publish(export(tiny_model(seed=0, epochs=3), root / "v1"), repository) == 1
    assert publish(export(tiny_model(seed=7, epochs=0), root / "v2"), repository) == 2
    return MODEL, dataset, str(repository)


def test_cli_calibrate_prints_the_curve_and_agrees_with_the_pure_function(colour_world, tmp_path, capsys):
    from ingot.cli.main import main
    from ingot.data.records import open_dataset_artifact
    from ingot.evaluate.cascade import saved_model_probabilities

    model, dataset, repository = colour_world
    split = open_dataset_artifact(dataset).validation
    small, labels = saved_model_probabilities(f"{repository}/{model}/2", split)
    full, _ = saved_model_probabilities(f"{repository}/{model}/1", split)
    expected = calibrate(small, full, labels, max_loss_points=0.5)

    plot = tmp_path / "curve.png"
    code = main(["cascade", "calibrate", model, "--small", "2", "--full", f"{repository}/{model}/1", "--dataset", dataset,
                 "--model-repository", repository, "--json", "--plot", str(plot)])
    document = json.loads(capsys.readouterr().out)
    assert code == (0 if expected.chosen is not None else 1)
    assert document["threshold"] == (expected.chosen.threshold if expected.chosen else None)
    assert document["rows"] == len(labels) == 30 and len(document["curve"]) == len(expected.curve)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Small = the trained model: it may answer every row within the loss.
    assert main(["cascade", "calibrate", model, "--small", "1", "--full", "2", "--dataset", dataset,
                 "--model-repository", repository, "--max-loss", "0"]) == 0
    out = capsys.readouterr().out
    assert "<- chosen" in out and "coverage" in out and "threshold" in out


def test_cli_calibrate_names_a_missing_version(colour_world, capsys):
    from ingot.cli.main import main

    model, dataset, repository = colour_world
    assert main(["cascade", "calibrate", model, "--small", "9", "--full", "1", "--dataset", dataset,
                 "--model-repository", repository]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ingot: error: model {model} has no version 9 in the model repository {repository} (versions: 1, 2)"]
