"""The blessing gate: a candidate model is published only if it clears explicit thresholds.

Like TFX's Evaluator, the gate never blesses when no thresholds are configured: a missing
configuration must not turn into "anything goes". Every check is recorded with its value,
threshold and outcome, and every failed check adds a human-readable reason, so a rejection in a
pipeline run explains itself.
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

    def __post_init__(self) -> None:
        _check_fraction("min_accuracy", self.min_accuracy)
        _check_fraction("min_class_f1", self.min_class_f1)
        if self.max_regression is None:
            raise ConfigError("max_regression must be a number between 0 and 1, not None")
        _check_fraction("max_regression", self.max_regression)

    @property
    def configured(self) -> bool:
        return self.min_accuracy is not None or self.min_class_f1 is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GateThresholds:
        valid = {"min_accuracy", "min_class_f1", "max_regression"}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ConfigError(
                f"unknown gate threshold(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        return cls(**dict(values))


@dataclass
class GateDecision:
    """The gate's verdict. `checks` holds every check as {name, value, threshold, passed};
    `reasons` one sentence per failed check (empty when blessed)."""

    blessed: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)

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
        )

    def summary(self) -> str:
        if self.blessed:
            return f"BLESSED: {len(self.checks)} check(s) passed"
        return "REJECTED:\n" + "\n".join(f"  - {reason}" for reason in self.reasons)


def _metric(metrics: Mapping[str, Any], key: str, source: str) -> float:
    if key not in metrics:
        raise ConfigError(f"{source} has no {key!r}; expected a dict like EvaluationReport.to_dict()")
    value = float(metrics[key])
    if math.isnan(value):
        raise ConfigError(f"{source} {key} is NaN")
    return value


def bless(
    report: Any, thresholds: GateThresholds, champion_metrics: Mapping[str, Any] | None = None
) -> GateDecision:
    """Decide whether `report` (an EvaluationReport or its dict) may be published.

    Blesses only if accuracy >= min_accuracy, every class F1 >= min_class_f1, and (when the
    champion's metrics are given) accuracy and macro F1 are at most `max_regression` below the
    champion's. Never blesses when neither min_accuracy nor min_class_f1 is configured.
    """
    metrics = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    checks: list[dict[str, Any]] = []
    reasons: list[str] = []

    def check(name: str, value: float, threshold: float, reason: str) -> None:
        passed = value >= threshold - _EPSILON  # an exact tie passes despite float rounding
        checks.append({"name": name, "value": value, "threshold": threshold, "passed": passed})
        if not passed:
            reasons.append(reason)

    if not thresholds.configured:
        reasons.append(
            "no thresholds configured (min_accuracy and min_class_f1 are both None); "
            "the gate never blesses an unconstrained model"
        )

    accuracy = _metric(metrics, "accuracy", "evaluation report")
    if thresholds.min_accuracy is not None:
        floor = float(thresholds.min_accuracy)
        check("accuracy", accuracy, floor, f"accuracy {accuracy:.4f} is below the minimum {floor:.4f}")

    if thresholds.min_class_f1 is not None:
        per_class = metrics.get("per_class")
        if not per_class:
            raise ConfigError("evaluation report has no per_class metrics; cannot apply min_class_f1")
        floor = float(thresholds.min_class_f1)
        for name in metrics.get("class_names") or list(per_class):
            f1 = float(per_class[name]["f1"])
            check(
                f"class_f1:{name}",
                f1,
                floor,
                f"class {name!r} F1 {f1:.4f} is below the floor {floor:.4f}",
            )

    if champion_metrics is not None:
        tolerance = float(thresholds.max_regression)
        for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro F1")):
            champion = _metric(champion_metrics, key, "champion metrics")
            value = _metric(metrics, key, "evaluation report")
            floor = champion - tolerance
            check(
                f"{key}_vs_champion",
                value,
                floor,
                f"{label} {value:.4f} regresses more than {tolerance:.4f} from the champion's "
                f"{champion:.4f} (needs at least {floor:.4f})",
            )

    blessed = thresholds.configured and not reasons and all(c["passed"] for c in checks)
    return GateDecision(blessed=blessed, reasons=reasons, checks=checks, thresholds=thresholds.to_dict())
