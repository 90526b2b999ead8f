"""The blessing gate: a candidate model is published only if it clears explicit thresholds.

Like TFX's Evaluator, the gate never blesses when no thresholds are configured: a missing
configuration must not turn into "anything goes". Every check is recorded with its value,
threshold and outcome, and every failed check adds a human-readable reason, so a rejection in a
pipeline run explains itself.

Given the candidate's row-level predictions on its test split (and the champion's on the same
rows), the gate judges by confidence intervals instead of point estimates (see
`ingot.evaluate.paired`): a floor fails only when the metric is credibly below it, and the
champion comparison fails only on a credible regression beyond `max_regression`. Each such check
carries its interval and a sentence that prints it. Without predictions the gate compares point
estimates, as it always has.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ingot.errors import ConfigError
from ingot.settings import DEFAULT_MAX_REGRESSION, DEFAULT_MIN_CLASS_F1

_EPSILON = 1e-9
DEFAULT_ALPHA = 0.05
DEFAULT_INT8_MAX_LOSS = 0.005  # 0.5 accuracy points: the int8 model.tflite beside the SavedModel


def _check_fraction(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name}={value!r} is out of range; expected a number between 0 and 1 or None")


@dataclass(frozen=True)
class GateThresholds:
    """`min_accuracy`: overall accuracy floor; `min_class_f1`: the floor every class's F1 must
    reach; `max_regression`: how much accuracy or macro F1 may drop below the champion's."""

    min_accuracy: float | None = None
    min_class_f1: float | None = DEFAULT_MIN_CLASS_F1
    max_regression: float = DEFAULT_MAX_REGRESSION
    # The risk of a wrong rejection per interval: floors and champion comparisons are judged by
    # two-sided (1 - alpha) confidence intervals.
    alpha: float = DEFAULT_ALPHA
    # How far the int8 model.tflite may fall below the float model's accuracy on the same test rows
    # before it is left out of the version (ingot.export.tflite); the float model is judged as above.
    int8_max_loss: float = DEFAULT_INT8_MAX_LOSS

    def __post_init__(self) -> None:
        _check_fraction("min_accuracy", self.min_accuracy)
        _check_fraction("min_class_f1", self.min_class_f1)
        if self.max_regression is None:
            raise ConfigError("max_regression must be a number between 0 and 1, not None")
        _check_fraction("max_regression", self.max_regression)
        if self.int8_max_loss is None:
            raise ConfigError("int8_max_loss must be a number between 0 and 1, not None")
        _check_fraction("int8_max_loss", self.int8_max_loss)
        if self.alpha is None or not 0.0 < float(self.alpha) < 1.0:
            raise ConfigError(f"alpha={self.alpha!r} is out of range; expected a number strictly between 0 and 1")

    @property
    def configured(self) -> bool:
        return self.min_accuracy is not None or self.min_class_f1 is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GateThresholds:
        valid = {"min_accuracy", "min_class_f1", "max_regression", "alpha", "int8_max_loss"}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ConfigError(
                f"unknown gate threshold(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        return cls(**dict(values))


@dataclass
class GateDecision:
    """The gate's verdict. `checks` holds every check as {name, value, threshold, passed};
    `reasons` one sentence per failed check (empty when blessed). Checks judged by an interval
    also hold `interval` and `text`; `comparisons` holds the paired comparisons against the
    champion by metric (`PairedComparison.to_dict()`), empty when none was made."""

    blessed: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GateDecision:
        return cls(
            blessed=bool(values["blessed"]),
            reasons=[str(r) for r in values.get("reasons", [])],
            checks=[dict(c) for c in values.get("checks", [])],
            thresholds=dict(values.get("thresholds", {})),
            comparisons={str(k): dict(v) for k, v in (values.get("comparisons") or {}).items()},
        )

    def summary(self) -> str:
        if self.blessed:
            lines = [f"  - {c['text']}" for c in self.checks if c.get("text")]
            return "\n".join([f"BLESSED: {len(self.checks)} check(s) passed", *lines])
        return "REJECTED:\n" + "\n".join(f"  - {reason}" for reason in self.reasons)


def _metric(metrics: Mapping[str, Any], key: str, source: str) -> float:
    if key not in metrics:
        raise ConfigError(f"{source} has no {key!r}; expected a dict like EvaluationReport.to_dict()")
    value = float(metrics[key])
    if math.isnan(value):
        raise ConfigError(f"{source} {key} is NaN")
    return value


def bless(
    report: Any,
    thresholds: GateThresholds,
    champion_metrics: Mapping[str, Any] | None = None,
    *,
    labels: Any = None,
    predictions: Any = None,
    champion_predictions: Any = None,
    alpha: float = DEFAULT_ALPHA,
    resamples: int | None = None,
    seed: int = 0,
    comparison_rows: tuple[Any, Any, Any, str] | None = None,
) -> GateDecision:
    """Decide whether `report` (an EvaluationReport or its dict) may be published.

    Without predictions: blesses only if accuracy >= min_accuracy, every class F1 >=
    min_class_f1, and (when the champion's metrics are given) accuracy and macro F1 are at most
    `max_regression` below the champion's.

    With `labels` and `predictions` (the candidate's class ids or probabilities on the rows the
    report was computed on), the floors fail only when credibly below (interval at 1 − alpha);
    with `champion_predictions` on the same rows as well, accuracy and macro F1 are compared
    paired and fail only on a credible regression beyond `max_regression`; `champion_metrics`
    is then not used for the decision. Never blesses when neither min_accuracy nor min_class_f1
    is configured.

    `comparison_rows` (labels, candidate predictions, champion predictions, where): make the paired
    champion comparison on those rows instead (a production holdout, ingot.evaluate.holdout); the
    floors stay on the report's rows.
    """
    metrics = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    checks: list[dict[str, Any]] = []
    reasons: list[str] = []
    comparisons: dict[str, dict[str, Any]] = {}

    def check(name: str, value: float, threshold: float, reason: str) -> None:
        passed = value >= threshold - _EPSILON  # an exact tie passes despite float rounding
        checks.append({"name": name, "value": value, "threshold": threshold, "passed": passed})
        if not passed:
            reasons.append(reason)

    def judged(entry: dict[str, Any]) -> None:
        checks.append(entry)
        if not entry["passed"]:
            reasons.append(entry["text"])

    if not thresholds.configured:
        reasons.append(
            "no thresholds configured (min_accuracy and min_class_f1 are both None); "
            "the gate never blesses an unconstrained model"
        )
    if champion_predictions is not None and (labels is None or predictions is None):
        raise ConfigError("champion_predictions needs the candidate's labels and predictions on the same rows")
    if (labels is None) != (predictions is None):
        raise ConfigError("labels and predictions go together: the candidate's test rows and its predictions on them")

    accuracy = _metric(metrics, "accuracy", "evaluation report")
    rows = None if labels is None else _rows(metrics, accuracy, labels, predictions)
    options: dict[str, int] = {} if resamples is None else {"resamples": int(resamples)}

    if thresholds.min_accuracy is not None:
        floor = float(thresholds.min_accuracy)
        if rows is None:
            check("accuracy", accuracy, floor, f"accuracy {accuracy:.4f} is below the minimum {floor:.4f}")
        else:
            from ingot.evaluate.paired import accuracy_floor

            y, predicted = rows
            judged(_floor_entry("accuracy", "accuracy",
                                accuracy_floor(int((y == predicted).sum()), int(y.size), floor=floor, alpha=alpha)))

    if thresholds.min_class_f1 is not None:
        per_class = metrics.get("per_class")
        if not per_class:
            raise ConfigError("evaluation report has no per_class metrics; cannot apply min_class_f1")
        floor = float(thresholds.min_class_f1)
        names = list(metrics.get("class_names") or list(per_class))
        if rows is None:
            for name in names:
                f1 = float(per_class[name]["f1"])
                check(
                    f"class_f1:{name}",
                    f1,
                    floor,
                    f"class {name!r} F1 {f1:.4f} is below the floor {floor:.4f}",
                )
        else:
            from ingot.evaluate.paired import class_f1_floors

            y, predicted = rows
            results = class_f1_floors(y, predicted, floor=floor, alpha=alpha, num_classes=len(names),
                                      seed=seed, **options)
            for name, class_floor in zip(names, results):
                judged(_floor_entry(f"class_f1:{name}", f"class {name!r} F1", class_floor))

    if comparison_rows is not None or (rows is not None and champion_predictions is not None):
        from ingot.evaluate.paired import class_ids, compare_paired

        if comparison_rows is not None:
            y = class_ids(comparison_rows[0], name="comparison labels")
            predicted = class_ids(comparison_rows[1], y.size, name="candidate predictions")
            champion = class_ids(comparison_rows[2], y.size, name="champion predictions")
            where = comparison_rows[3]
        else:
            assert rows is not None
            y, predicted = rows
            champion = class_ids(champion_predictions, y.size, name="champion predictions")
            where = "test"
        num_classes = len(metrics.get("class_names") or []) or None
        for key in ("accuracy", "macro_f1"):
            comparison = compare_paired(y, champion, predicted, tolerance=float(thresholds.max_regression), alpha=alpha,
                                    metric=key, num_classes=num_classes, seed=seed, **options)
            comparisons[key] = {**comparison.to_dict(), "rows": where}
            text = comparison.text() + ("" if where == "test" else f" (on the {where} split, {y.size} rows)")
            judged({"name": f"{key}_vs_champion", "value": comparison.difference,
                    "threshold": -comparison.tolerance, "passed": not comparison.regressed,
                    "interval": list(comparison.interval), "alpha": comparison.alpha,
                    "candidate": comparison.candidate, "champion": comparison.champion,
                    "method": comparison.method, "rows": where, "text": text})
    elif champion_metrics is not None:
        tolerance = float(thresholds.max_regression)
        for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro F1")):
            champion_value = _metric(champion_metrics, key, "champion metrics")
            value = _metric(metrics, key, "evaluation report")
            floor = champion_value - tolerance
            check(
                f"{key}_vs_champion",
                value,
                floor,
                f"{label} {value:.4f} regresses more than {tolerance:.4f} from the champion's "
                f"{champion_value:.4f} (needs at least {floor:.4f})",
            )

    blessed = thresholds.configured and not reasons and all(c["passed"] for c in checks)
    return GateDecision(blessed=blessed, reasons=reasons, checks=checks, thresholds=thresholds.to_dict(),
                        comparisons=comparisons)


def _rows(metrics: Mapping[str, Any], accuracy: float, labels: Any, predictions: Any) -> tuple[Any, Any]:
    """The candidate's (labels, predicted ids), checked to be the rows the report describes."""
    from ingot.evaluate.paired import class_ids

    y = class_ids(labels, name="labels")
    predicted = class_ids(predictions, y.size)
    expected = metrics.get("num_examples")
    if (expected is not None and int(expected) != y.size) or (
        y.size and abs(float((y == predicted).mean()) - accuracy) > 1e-6
    ):
        raise ConfigError(
            f"the labels and predictions ({y.size} rows) are not the rows the evaluation report was computed on "
            f"({expected} rows, accuracy {accuracy:.4f})"
        )
    return y, predicted


def _floor_entry(name: str, label: str, result: Any) -> dict[str, Any]:
    return {"name": name, "value": result.value, "threshold": result.floor, "passed": not result.below,
            "interval": list(result.interval), "alpha": result.alpha, "method": result.method,
            "text": result.text(label)}
