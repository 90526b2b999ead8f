"""The drift tests: calm on windows from the validation distribution, alarmed by each shift."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingot.errors import DataError
from ingot.evaluate.drift import (
    CARD_KEY,
    NO_BASELINE_NOTE,
    Calibration,
    DriftBaseline,
    bucket_index,
    input_statistics,
)
from ingot.monitor.statistics import (
    CHECKS,
    DRIFT,
    INSUFFICIENT,
    NO_DRIFT,
    Measurement,
    Window,
    check_window,
    family,
    psi,
)
from tests.monitor.simulate import CLASS_NAMES, NUM_CLASSES, baseline, draw

BASELINE = baseline()


def test_baseline_is_json_and_holds_every_field():
    values = json.loads(json.dumps(BASELINE.to_dict(), allow_nan=False))
    assert values["num_examples"] == 2000 and values["class_names"] == CLASS_NAMES
    assert sum(values["predicted_class_counts"]) == 2000 == sum(values["confidence_counts"])
    assert sum(values["input_mean"]["counts"]) == 2000 == sum(values["input_std"]["counts"])
    assert 0.75 < values["accuracy"] < 0.95
    # Isotonic regression preserves the mean: calibrated confidence on the validation split
    # averages to its accuracy (up to evaluating it at bin midpoints).
    assert values["calibrated_confidence_mean"] == pytest.approx(values["accuracy"], abs=0.01)
    x, y = values["calibration"]["x"], values["calibration"]["y"]
    assert x == sorted(x) and y == sorted(y)


def test_input_statistics_are_mean_and_std_of_all_pixels():
    image = np.zeros((2, 2, 3), np.uint8)
    image[0] = 255
    means, stds = input_statistics(image)
    assert means.tolist() == [127.5] and stds.tolist() == [127.5]
    batch = np.random.default_rng(1).integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    means, stds = input_statistics(batch)
    assert np.allclose(means, batch.reshape(3, -1).mean(axis=1))
    assert np.allclose(stds, batch.reshape(3, -1).std(axis=1))
    with pytest.raises(DataError, match="uint8"):
        input_statistics(batch.astype(np.float32))
    with pytest.raises(DataError, match=r"\[batch, H, W, C\]"):
        input_statistics(np.zeros((4, 4), np.uint8))


def test_bucket_index_puts_the_top_edge_in_the_last_bin():
    assert bucket_index([0.0, 0.005, 0.01, 0.999, 1.0], 0.0, 1.0, 100).tolist() == [0, 0, 1, 99, 99]
    assert bucket_index([255.0, 300.0, -1.0], 0.0, 256.0, 64).tolist() == [63, 63, 0]


def test_calibration_round_trips_through_its_thresholds():
    calibration = Calibration.from_dict(BASELINE.to_dict()["calibration"])
    assert calibration(np.array([0.0, 1.0])).tolist() == [calibration.y[0], calibration.y[-1]]
    assert np.all(np.diff(calibration(np.linspace(0, 1, 50))) >= 0)


def test_compute_baseline_refuses_mismatched_inputs():
    batch = draw(10, np.random.default_rng(0))
    with pytest.raises(DataError, match="class names"):
        DriftBaseline.compute(batch.probabilities, batch.labels, CLASS_NAMES[:-1])
    with pytest.raises(DataError, match="labels"):
        DriftBaseline.compute(batch.probabilities, batch.labels[:-1], CLASS_NAMES)
    without_images = DriftBaseline.compute(batch.probabilities, batch.labels, CLASS_NAMES)
    assert without_images.input_mean is None and without_images.to_dict()["input_mean"] is None


def test_200_windows_from_the_validation_distribution_raise_at_most_5_percent_alarms():
    calls = [check_window(BASELINE, draw(500, np.random.default_rng(1000 + seed)).window(labelled=seed % 2 == 0))
             for seed in range(200)]
    assert all(result.status in (DRIFT, NO_DRIFT) for result in calls)
    alarms = sum(result.status == DRIFT for result in calls)
    assert alarms <= 10, f"{alarms} false alarms in 200 windows"
    # Every test ran: six p-value tests on labelled windows, five on the others.
    assert {len([t for t in r.tests if t.kind == "p-value"]) for r in calls} == {5, 6}


def test_class_prior_shift_is_detected():
    shifted = draw(500, np.random.default_rng(7), prior=[0.6, 0.1, 0.1, 0.1, 0.1]).window()
    result = check_window(BASELINE, shifted)
    assert result.status == DRIFT
    assert "class_prior_chi2" in result.drifted
    js = next(t for t in result.tests if t.name == "class_prior_js")
    assert js.verdict == "large"


def test_confidence_collapse_is_detected_and_lowers_the_accuracy_estimate():
    collapsed = draw(500, np.random.default_rng(8), sharpness=1.0).window()
    result = check_window(BASELINE, collapsed)
    assert result.status == DRIFT
    assert {"confidence_ks", "accuracy_estimate"} <= set(result.drifted)
    assert result.estimated_accuracy < BASELINE.accuracy - 0.15


def test_darkened_and_inverted_images_move_the_input_statistics():
    for kwargs in ({"darken": 0.3}, {"invert": True}):
        result = check_window(BASELINE, draw(500, np.random.default_rng(9), **kwargs).window())
        assert result.status == DRIFT, kwargs
        assert "input_mean_ks" in result.drifted, kwargs


def test_labelled_accuracy_drop_is_detected_with_an_interval():
    batch = draw(400, np.random.default_rng(10))
    # The world changed under the model: a third of the labels now disagree with what it says.
    flipped = batch.labels.copy()
    flip = np.random.default_rng(11).random(flipped.size) < 0.35
    flipped[flip] = (flipped[flip] + 1) % NUM_CLASSES
    window = Window.from_values(batch.predicted, batch.confidence, NUM_CLASSES, correct=batch.predicted == flipped)
    result = check_window(BASELINE, window, accuracy_floor=0.7)
    assert result.status == DRIFT and result.drifted == ["labelled_accuracy"]
    low, high = result.labelled_interval
    assert low < result.labelled_accuracy < high < BASELINE.accuracy
    assert result.below_floor


def test_below_the_minimum_window_is_insufficient_data():
    tiny = draw(50, np.random.default_rng(12), prior=[1, 0, 0, 0, 0]).window(labelled=True)
    result = check_window(BASELINE, tiny, min_rows=200)
    assert result.status == INSUFFICIENT and result.tests == []
    assert "fewer than the minimum 200" in result.notes[0]


def test_psi_is_zero_for_identical_and_large_for_disjoint_histograms():
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert psi([100, 0], [0, 100]) > 5


def test_cards_without_the_drift_baseline_fall_back_to_what_they_have():
    legacy = {"confidence_baseline": {"num_examples": 2000, "predicted_class_counts": list(BASELINE.predicted_class_counts),
                                      "confidence_counts": np.asarray(BASELINE.confidence.counts).reshape(20, 5).sum(axis=1).tolist(),
                                      "class_names": CLASS_NAMES},
              "metrics": {"accuracy": BASELINE.accuracy}}
    found = DriftBaseline.from_card(legacy)
    notes = found.notes
    assert found.calibration is None and "no calibration map" in notes[0]
    result = check_window(found, draw(500, np.random.default_rng(13), sharpness=1.0).window(), notes=notes)
    names = {t.name for t in result.tests}
    assert names == {"class_prior_chi2", "class_prior_js", "confidence_ks", "confidence_psi"}
    assert result.status == DRIFT and result.notes == notes
    assert DriftBaseline.from_card({}) is None and "only labelled accuracy" in NO_BASELINE_NOTE
    full = DriftBaseline.from_card({CARD_KEY: BASELINE.to_dict()})
    assert full == BASELINE and full.notes == []


def test_each_check_is_one_function_and_the_family_is_assembled_in_one_place():
    names = [check.__name__ for check in CHECKS]
    assert names == ["class_prior_chi2", "class_prior_js", "confidence_ks", "confidence_psi", "input_mean_ks",
                     "input_std_ks", "accuracy_estimate", "labelled_accuracy", "embedding_mmd",
                     "embedding_classifier"]
    measured = [Measurement("js", "distance", 0.2, 0.2, "", 0.1), Measurement("a", "p-value", 1.0, 0.004, ""),
                Measurement("b", "p-value", 2.0, 0.006, "")]
    findings = family(measured, alpha=0.01)
    assert [(f.name, f.threshold, f.verdict) for f in findings] == [
        ("a", 0.005, DRIFT), ("b", 0.005, "ok"), ("js", 0.1, "large")]
    # An advisory p-value test is judged at the deciding family's threshold but neither counts in
    # m nor decides.
    aside = family([*measured, Measurement("c", "p-value", 3.0, 0.001, "")], alpha=0.01, advisory={"c"})
    assert [(f.name, f.threshold, f.verdict, f.advisory) for f in aside] == [
        ("a", 0.005, DRIFT, False), ("b", 0.005, "ok", False), ("c", 0.005, "drift (advisory)", True),
        ("js", 0.1, "large", False)]
