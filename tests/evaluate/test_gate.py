"""The blessing gate: blesses only when every configured check passes, names every failure; given
row-level predictions, it judges by intervals and prints them."""

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
        "alpha": 0.05,  # the thresholds now carry the intervals' risk
        "int8_max_loss": 0.005,  # and the int8 model's tolerance against the float one
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


# --- judged by intervals: row-level predictions given -------------------------------------------

DIGITS = [str(i) for i in range(10)]
Y = np.arange(270) % 10


def miss(rows):
    """Predictions on Y that are wrong exactly on `rows` (as one-hot probabilities)."""
    predicted = Y.copy()
    predicted[list(rows)] = (Y[list(rows)] + 1) % 10
    return np.eye(10)[predicted]


# The run: champion 5 errors of 270 (0.9815), challenger 8 (0.9704), 2 of them shared.
CHAMPION = miss([0, 11, 22, 33, 44])
CHALLENGER = miss([0, 11, 55, 66, 77, 88, 99, 109])
DEFAULTS = GateThresholds(min_accuracy=0.9)


def judged(candidate, champion=CHAMPION, thresholds=DEFAULTS, **kwargs):
    report = evaluate_predictions(Y, candidate, DIGITS)
    return report, bless(report, thresholds, labels=Y, predictions=candidate, champion_predictions=champion,
                         **kwargs)


def test_three_images_worse_is_rejected_by_the_fixed_rule_and_blessed_by_the_paired_gate():
    report, decision = judged(CHALLENGER)
    champion = evaluate_predictions(Y, CHAMPION, DIGITS).to_dict()
    assert not bless(report, DEFAULTS, champion).blessed  # the old rule flips on 3 images
    assert decision.blessed, decision.reasons
    vs = {c["name"]: c for c in decision.checks}
    accuracy = vs["accuracy_vs_champion"]
    assert accuracy["value"] == pytest.approx(-3 / 270) and accuracy["threshold"] == -0.01
    assert accuracy["interval"][0] < -0.01 < 0 < accuracy["interval"][1]
    assert accuracy["candidate"] == pytest.approx(262 / 270) and accuracy["champion"] == pytest.approx(265 / 270)
    assert decision.comparisons["accuracy"]["discordant"] == 9
    assert decision.comparisons["accuracy"]["interval"] == accuracy["interval"]
    assert decision.comparisons["macro_f1"]["method"].startswith("paired bootstrap")
    summary = decision.summary()
    assert summary.startswith("BLESSED: 13 check(s) passed")
    assert "accuracy -0.011 vs champion (0.9704 vs 0.9815 on the same 270 rows, 9 discordant), 95% interval [" in summary
    assert "]: no credible regression beyond 0.01" in summary
    assert "accuracy 0.9704, 95% interval [0.942, 0.987]: not credibly below the floor 0.9000" in summary
    assert "class '9' F1" in summary and "99.5% interval" in summary


def test_a_credible_regression_is_rejected_and_its_reason_prints_the_interval():
    worse = miss([0, 11, 22, 33, 44, *range(100, 120)])  # the champion's 5 errors and 20 more
    _, decision = judged(worse)
    assert not decision.blessed
    assert [c["name"] for c in decision.checks if not c["passed"]] == [
        "accuracy_vs_champion", "macro_f1_vs_champion"]
    assert len(decision.reasons) == 2
    reason = decision.reasons[0]
    assert reason.startswith("accuracy -0.074 vs champion (0.9074 vs 0.9815 on the same 270 rows, 20 discordant), "
                             "95% interval [-0.")
    assert reason.endswith("]: credibly worse than the champion by more than 0.01")
    assert decision.comparisons["accuracy"]["interval"][1] < -0.01
    assert decision.reasons[1].startswith("macro F1 -0.0")
    assert "REJECTED" in decision.summary() and "95% interval" in decision.summary()


def test_the_champions_card_is_not_used_when_its_predictions_are_given():
    report = evaluate_predictions(Y, CHALLENGER, DIGITS)
    flattering = {"accuracy": 1.0, "macro_f1": 1.0}  # what a card scored on other rows might say
    decision = bless(report, DEFAULTS, flattering, labels=Y, predictions=CHALLENGER, champion_predictions=CHAMPION)
    assert decision.blessed
    assert {c["name"]: c for c in decision.checks}["accuracy_vs_champion"]["champion"] == pytest.approx(265 / 270)


def test_floors_fail_only_when_credibly_below():
    # WEAK_FOX's fox F1 of 0.67 on 4 rows is under the 0.7 floor but says nothing credible.
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    predicted = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 1, 1]
    decision = bless(WEAK_FOX, GateThresholds(min_accuracy=0.5, min_class_f1=0.7), labels=labels,
                     predictions=predicted)
    assert decision.blessed, decision.reasons
    fox = {c["name"]: c for c in decision.checks}["class_f1:fox"]
    assert fox["value"] == pytest.approx(2 / 3) and fox["interval"][1] > 0.7
    # On 270 rows, a class found 7 times of 27 is credibly below the floor, and so is the accuracy.
    weak = [i for i in range(270) if Y[i] == 3][:20] + list(range(0, 270, 7))
    candidate = miss(sorted(set(weak)))
    report = evaluate_predictions(Y, candidate, DIGITS)
    decision = bless(report, GateThresholds(min_accuracy=0.97, min_class_f1=0.7), labels=Y, predictions=candidate)
    assert not decision.blessed
    failed = [c["name"] for c in decision.checks if not c["passed"]]
    assert failed == ["accuracy", "class_f1:3"]
    assert decision.reasons[0].startswith(f"accuracy {report.accuracy:.4f}, 95% interval [")
    assert decision.reasons[0].endswith("]: credibly below the floor 0.9700")
    assert decision.reasons[1].startswith("class '3' F1 ") and "99.5% interval [" in decision.reasons[1]
    assert decision.comparisons == {}


def test_judged_decisions_are_deterministic_and_round_trip_through_json():
    _, first = judged(CHALLENGER)
    _, second = judged(CHALLENGER)
    assert first == second
    restored = GateDecision.from_dict(json.loads(first.to_json()))
    assert restored == first
    assert restored.comparisons["accuracy"]["interval"] == first.comparisons["accuracy"]["interval"]


def test_predictions_must_be_the_reports_rows():
    report = evaluate_predictions(Y, CHALLENGER, DIGITS)
    with pytest.raises(ConfigError, match="not the rows the evaluation report"):
        bless(report, DEFAULTS, labels=Y, predictions=CHAMPION)
    with pytest.raises(ConfigError, match="not the rows the evaluation report"):
        bless(report, DEFAULTS, labels=Y[:-1], predictions=CHALLENGER[:-1])
    with pytest.raises(ConfigError, match="champion_predictions needs"):
        bless(report, DEFAULTS, champion_predictions=CHAMPION)
    with pytest.raises(ConfigError, match="labels and predictions go together"):
        bless(report, DEFAULTS, labels=Y)


def test_old_decisions_without_comparisons_still_load():
    values = bless(PERFECT, GateThresholds(min_accuracy=0.9)).to_dict()
    del values["comparisons"]
    assert GateDecision.from_dict(values).comparisons == {}


def test_alpha_is_a_threshold_checked_for_range():
    from ingot.errors import ConfigError
    from ingot.evaluate.gate import GateThresholds

    assert GateThresholds.from_dict({"alpha": 0.01}).alpha == 0.01
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match="alpha"):
            GateThresholds(alpha=bad)
