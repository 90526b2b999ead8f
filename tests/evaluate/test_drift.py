"""The typed drift baseline: computed from validation predictions, written to and read from model
cards, including cards written before it existed (tests/evaluate/data/model_card_2026.json was
written by the evaluate step and exporter of that time: it carries both `drift_baseline` and the
older `confidence_baseline`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingot.errors import DataError
from ingot.evaluate.drift import (
    CARD_KEY,
    CONFIDENCE_BINS,
    INPUT_MEAN_RANGE,
    LEGACY_CARD_KEY,
    Calibration,
    DriftBaseline,
    Histogram,
    input_statistics,
)

CARD = json.loads((Path(__file__).parent / "data" / "model_card_2026.json").read_text())


def _validation(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    logits = rng.normal(0, 1, size=(n, 3))
    logits[np.arange(n), labels] += 3 * rng.uniform(0.3, 1, size=n)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    images = rng.integers(0, 256, size=(n, 6, 6, 3), dtype=np.uint8)
    return probabilities, labels, images


def test_a_card_written_today_reads_back_field_for_field():
    baseline = DriftBaseline.from_card(CARD)
    assert baseline is not None and not baseline.legacy and baseline.notes == []
    assert baseline.to_dict() == CARD[CARD_KEY]  # nothing lost, nothing renamed
    assert baseline.class_names == tuple(CARD["class_names"])
    assert baseline.confidence.bins == CONFIDENCE_BINS and sum(baseline.confidence.counts) == baseline.num_examples
    assert baseline.input_mean is not None and baseline.input_mean.bins == INPUT_MEAN_RANGE[2]
    assert baseline.input_mean.edges[0] == 0.0 and baseline.input_mean.edges[-1] == 256.0
    assert baseline.calibration is not None and baseline.accuracy == CARD[CARD_KEY]["accuracy"]


def test_a_card_with_only_the_older_confidence_baseline_still_reads():
    older = {key: value for key, value in CARD.items() if key != CARD_KEY}
    baseline = DriftBaseline.from_card(older)
    assert baseline is not None and baseline.legacy
    legacy = CARD[LEGACY_CARD_KEY]
    assert baseline.predicted_class_counts == tuple(legacy["predicted_class_counts"])
    assert baseline.confidence.counts == tuple(legacy["confidence_counts"]) and baseline.confidence.bins == 20
    assert baseline.accuracy == CARD["metrics"]["accuracy"] and baseline.class_names == tuple(CARD["class_names"])
    assert baseline.calibration is None and baseline.input_mean is None and baseline.input_std is None
    assert "no calibration map" in baseline.notes[0]
    assert DriftBaseline.from_card({"name": "bare"}) is None


def test_compute_round_trips_through_the_card():
    probabilities, labels, images = _validation()
    baseline = DriftBaseline.compute(probabilities, labels, ["a", "b", "c"], images)
    card = json.loads(json.dumps(baseline.to_card(), allow_nan=False))
    assert list(card) == [CARD_KEY]
    assert DriftBaseline.from_card(card) == baseline
    assert set(card[CARD_KEY]) == set(CARD[CARD_KEY])  # the shape cards have today
    means, _ = input_statistics(images)
    assert baseline.input_mean == Histogram.of(means, *INPUT_MEAN_RANGE)
    assert baseline.predicted_class_counts == tuple(np.bincount(probabilities.argmax(axis=1), minlength=3))
    assert baseline.accuracy == pytest.approx(float((probabilities.argmax(axis=1) == labels).mean()))
    # Isotonic regression preserves the mean: calibrated confidence averages to the accuracy.
    assert baseline.calibrated_confidence_mean == pytest.approx(baseline.accuracy, abs=0.02)


def test_compute_refuses_what_cannot_be_a_baseline():
    probabilities, labels, images = _validation(20)
    with pytest.raises(DataError, match="class names"):
        DriftBaseline.compute(probabilities, labels, ["a", "b"])
    with pytest.raises(DataError, match="labels"):
        DriftBaseline.compute(probabilities, labels[:-1], ["a", "b", "c"])
    with pytest.raises(DataError, match="class indices"):
        DriftBaseline.compute(probabilities, labels + 3, ["a", "b", "c"])
    with pytest.raises(DataError, match="images"):
        DriftBaseline.compute(probabilities, labels, ["a", "b", "c"], images[:-1])
    with pytest.raises(DataError, match="N >= 1"):
        DriftBaseline.compute(np.zeros((0, 3)), [], ["a", "b", "c"])
    without_images = DriftBaseline.compute(probabilities, labels, ["a", "b", "c"])
    assert without_images.input_mean is None and "no input-statistics" in without_images.notes[0]


def test_calibration_needs_matching_thresholds():
    with pytest.raises(DataError, match="thresholds"):
        Calibration((0.1, 0.2), (0.5,))
    calibration = Calibration((0.2, 0.8), (0.4, 0.9))
    assert calibration([0.0, 0.5, 1.0]).tolist() == pytest.approx([0.4, 0.65, 0.9])


def test_importing_the_baseline_needs_no_tensorflow():
    code = "import sys, ingot.evaluate.drift; assert 'tensorflow' not in sys.modules and 'sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_hand_computed_baseline():
    probabilities = np.array([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.02, 0.03, 0.95]])
    baseline = DriftBaseline.compute(probabilities, [0, 1, 1, 2], ["red", "green", "blue"])
    assert baseline.confidence.edges.tolist() == pytest.approx(np.linspace(0, 1, 101).tolist())
    # Confidences 0.9, 0.5, 0.6, 0.95 -> bins 90 (0.9 is a left edge), 50, 60, 95.
    assert [i for i, count in enumerate(baseline.confidence.counts) for _ in range(count)] == [50, 60, 90, 95]
    assert baseline.predicted_class_counts == (2, 1, 1) and baseline.accuracy == 0.75
    assert baseline.class_names == ("red", "green", "blue") and baseline.num_examples == 4
    json.dumps(baseline.to_card(), allow_nan=False)
