"""The blessing gate: blesses only when every configured check passes, names every failure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingot.errors import ConfigError
from ingot.evaluate.gate import GateDecision, GateThresholds, bless
from ingot.evaluate.metrics import evaluate_predictions

CLASSES = ["cat", "dog", "fox"]


def report_with(predicted, labels=(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2)):
    probs = np.full((len(predicted), 3), 0.1)
    probs[np.arange(len(predicted)), predicted] = 0.8
    return evaluate_predictions(list(labels), probs, CLASSES)


PERFECT = report_with([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
# fox: 2 of 4 found, and the two misses predicted as dog -> fox F1 2/3, dog P 4/6 F1 0.8.
WEAK_FOX = report_with([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 1, 1])


def test_blesses_when_every_check_passes():
    decision = bless(PERFECT, GateThresholds(min_accuracy=0.9, min_class_f1=0.7))
    assert decision.blessed
    assert decision.reasons == []
    names = [c["name"] for c in decision.checks]
    assert names == ["accuracy", "class_f1:cat", "class_f1:dog", "class_f1:fox"]
    assert all(c["passed"] for c in decision.checks)
    assert decision.checks[0] == {"name": "accuracy", "value": 1.0, "threshold": 0.9, "passed": True}


def test_rejects_naming_the_failing_class_its_f1_and_the_floor():
    decision = bless(WEAK_FOX, GateThresholds(min_accuracy=0.5, min_class_f1=0.7))
    assert not decision.blessed
    assert len(decision.reasons) == 1
    reason = decision.reasons[0]
    assert "'fox'" in reason and "0.6667" in reason and "0.7000" in reason
    failed = [c for c in decision.checks if not c["passed"]]
    assert [c["name"] for c in failed] == ["class_f1:fox"]
    assert failed[0]["value"] == pytest.approx(2 / 3)


def test_rejects_on_low_accuracy_and_lists_every_reason():
    decision = bless(WEAK_FOX, GateThresholds(min_accuracy=0.95, min_class_f1=0.7))
    assert not decision.blessed
    assert len(decision.reasons) == 2
    assert "accuracy 0.8333 is below the minimum 0.9500" in decision.reasons[0]
    assert "'fox'" in decision.reasons[1]


def test_accuracy_exactly_at_the_threshold_passes():
    decision = bless(WEAK_FOX, GateThresholds(min_accuracy=10 / 12, min_class_f1=None))
    assert decision.blessed


def test_rejects_on_regression_against_the_champion():
    champion = PERFECT.to_dict()
    decision = bless(WEAK_FOX, GateThresholds(min_accuracy=0.5, min_class_f1=0.5), champion)
    assert not decision.blessed
    assert [c["name"] for c in decision.checks if not c["passed"]] == [
        "accuracy_vs_champion",
        "macro_f1_vs_champion",
    ]
    assert any("champion's 1.0000" in r and "accuracy 0.8333" in r for r in decision.reasons)


def test_regression_within_tolerance_is_blessed():
    champion = dict(WEAK_FOX.to_dict(), accuracy=WEAK_FOX.accuracy + 0.01, macro_f1=WEAK_FOX.macro_f1 + 0.005)
    decision = bless(WEAK_FOX, GateThresholds(min_accuracy=0.5, min_class_f1=0.5, max_regression=0.01), champion)
    assert decision.blessed, decision.reasons
    vs = {c["name"]: c for c in decision.checks}
    assert vs["accuracy_vs_champion"]["threshold"] == pytest.approx(WEAK_FOX.accuracy)


def test_a_better_model_than_the_champion_is_blessed():
    decision = bless(PERFECT, GateThresholds(min_accuracy=0.5), WEAK_FOX.to_dict())
    assert decision.blessed


def test_never_blesses_without_thresholds():
    decision = bless(PERFECT, GateThresholds(min_accuracy=None, min_class_f1=None))
    assert not decision.blessed
    assert "no thresholds configured" in decision.reasons[0]
    # Even a champion comparison alone is not a configured quality floor.
    decision = bless(PERFECT, GateThresholds(min_accuracy=None, min_class_f1=None), WEAK_FOX.to_dict())
    assert not decision.blessed


def test_decision_round_trips_through_json():
    decision = bless(WEAK_FOX, GateThresholds(min_accuracy=0.9), PERFECT.to_dict())
    text = json.dumps(decision.to_dict())
    restored = GateDecision.from_dict(json.loads(text))
    assert restored == decision
    assert json.loads(decision.to_json())["thresholds"] == {
        "min_accuracy": 0.9,
        "min_class_f1": 0.7,
        "max_regression": 0.01,
    }
    assert "REJECTED" in decision.summary() and "'fox'" in decision.summary()


def test_accepts_a_report_dict():
    assert bless(PERFECT.to_dict(), GateThresholds(min_accuracy=0.9)).blessed


def test_out_of_range_thresholds_are_refused():
    with pytest.raises(ConfigError, match="min_class_f1"):
        GateThresholds(min_class_f1=70)
    with pytest.raises(ConfigError, match="unknown gate threshold.*min_acc"):
        GateThresholds.from_dict({"min_acc": 0.9})


def test_champion_metrics_without_accuracy_are_refused():
    with pytest.raises(ConfigError, match="champion metrics has no 'accuracy'"):
        bless(PERFECT, GateThresholds(min_accuracy=0.5), {"f1": 0.9})
