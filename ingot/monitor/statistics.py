"""Drift tests of one window of live predictions against the model card's baseline (scipy.stats).

Both sides are counts over the same bins (`ingot.monitor.baseline`), so every test works on
aggregates the database computed. The tests, each run only when its inputs exist:

| test | statistic | decides by |
|---|---|---|
| `class_prior_chi2` | chi-square on the 2 x C table (baseline, live predicted-class counts) | p-value |
| `class_prior_js` | Jensen-Shannon distance (base 2, 0..1) of the two priors | distance (advisory) |
| `confidence_ks` | two-sample KS, samples rebuilt from the histograms at bin midpoints | p-value |
| `confidence_psi` | population stability index over 10 merged confidence bins | distance (advisory) |
| `input_mean_ks`, `input_std_ks` | two-sample KS on the per-image pixel statistics | p-value |
| `accuracy_estimate` | mean calibrated confidence (label-free, CBPE) vs the validation value: one-sided z | p-value |
| `labelled_accuracy` | accuracy on feedback labels vs validation accuracy: one-sided Fisher exact | p-value |

Multiple testing: Bonferroni over the p-value tests that ran. With family-wise level `alpha`
(default 0.01) and m tests, a test flags drift when p < alpha / m, so on stable traffic the chance
that a window is called drift at all is at most alpha. Distances (JS, PSI) are effect sizes shown
against conventional thresholds; they never decide alone, because at small windows they are
dominated by sampling noise. A window with fewer than `min_rows` predictions is `insufficient
data` and no test decides anything; labelled accuracy needs `min_labels` labels.

Rebuilding samples from bins makes the KS statistic the maximum CDF gap at bin edges, never
larger than the exact one: the test is conservative, never falsely alarming because of binning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ingot.errors import ConfigError

DRIFT = "drift"
NO_DRIFT = "no drift"
INSUFFICIENT = "insufficient data"
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_ROWS = 200
DEFAULT_MIN_LABELS = 50
JS_THRESHOLD = 0.1
PSI_THRESHOLD = 0.25  # the conventional "significant shift" level
PSI_BINS = 10
Counts = Sequence[int] | np.ndarray


@dataclass
class Window:
    """Aggregates of the live rows, binned like the baseline (see `ingot.monitor.window`)."""

    rows: int
    class_counts: list[int]
    confidence_counts: list[int]
    input_mean_counts: list[int] | None = None
    input_std_counts: list[int] | None = None
    labelled: int = 0
    correct: int = 0
    start: str | None = None
    end: str | None = None

    @property
    def input_rows(self) -> int:
        return int(sum(self.input_mean_counts)) if self.input_mean_counts else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_values(
        cls,
        class_ids: Sequence[int] | np.ndarray,
        confidences: Sequence[float] | np.ndarray,
        num_classes: int,
        *,
        input_means: Sequence[float] | np.ndarray | None = None,
        input_stds: Sequence[float] | np.ndarray | None = None,
        correct: Sequence[bool] | np.ndarray | None = None,
    ) -> Window:
        """Bin per-row values exactly as the SQL window does (for in-process callers and tests)."""
        from ingot.monitor.baseline import (
            CONFIDENCE_BINS,
            INPUT_MEAN_RANGE,
            INPUT_STD_RANGE,
            bucket_index,
        )

        def counts(values: Any, spec: tuple[float, float, int]) -> list[int] | None:
            if values is None:
                return None
            return np.bincount(bucket_index(values, *spec), minlength=spec[2]).astype(int).tolist()

        flags = None if correct is None else np.asarray(correct, dtype=bool)
        return cls(
            rows=len(class_ids),
            class_counts=np.bincount(np.asarray(class_ids, dtype=np.int64), minlength=num_classes).astype(int).tolist(),
            confidence_counts=counts(confidences, (0.0, 1.0, CONFIDENCE_BINS)) or [],
            input_mean_counts=counts(input_means, INPUT_MEAN_RANGE),
            input_std_counts=counts(input_stds, INPUT_STD_RANGE),
            labelled=0 if flags is None else int(flags.size),
            correct=0 if flags is None else int(flags.sum()),
        )


@dataclass
class Finding:
    name: str
    kind: str                 # "p-value" (decides, Bonferroni) or "distance" (advisory)
    statistic: float
    value: float              # the p-value or the distance
    threshold: float          # alpha / m for p-values, the distance threshold otherwise
    verdict: str              # "drift" / "ok" for p-values, "large" / "small" for distances
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckResult:
    status: str               # DRIFT, NO_DRIFT or INSUFFICIENT
    rows: int
    tests: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    alpha: float = DEFAULT_ALPHA
    estimated_accuracy: float | None = None
    validation_accuracy: float | None = None
    labelled_accuracy: float | None = None
    labelled_interval: tuple[float, float] | None = None
    below_floor: bool = False  # labelled accuracy's upper bound below the gate's accuracy floor

    @property
    def drifted(self) -> list[str]:
        return [t.name for t in self.tests if t.kind == "p-value" and t.verdict == DRIFT]

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["drifted"] = self.drifted
        return values


def rebin(counts: Counts, bins: int) -> np.ndarray:
    """Merge equal groups of neighbouring bins down to `bins` (e.g. 100 confidence bins -> 20)."""
    values = np.asarray(counts, dtype=np.int64)
    if values.size == bins:
        return values
    if values.size % bins:
        raise ConfigError(f"cannot merge {values.size} bins into {bins}")
    return values.reshape(bins, -1).sum(axis=1)


def _midpoint_sample(counts: np.ndarray, low: float, high: float) -> np.ndarray:
    from ingot.monitor.baseline import bucket_midpoints

    return np.repeat(bucket_midpoints(low, high, counts.size), counts)


def ks_binned(reference: Counts, live: Counts, low: float, high: float) -> tuple[float, float]:
    """Two-sample KS (statistic, p-value) on two histograms over the same bins."""
    from scipy.stats import ks_2samp

    result = ks_2samp(_midpoint_sample(np.asarray(reference), low, high),
                      _midpoint_sample(np.asarray(live), low, high), method="asymp")
    return float(result.statistic), float(result.pvalue)


def psi(reference: Counts, live: Counts, epsilon: float = 1e-4) -> float:
    """Population stability index sum((live - ref) * ln(live / ref)) over fractions; empty bins
    get `epsilon` so the log stays finite."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    ref = np.maximum(ref / ref.sum(), epsilon)
    cur = np.maximum(cur / cur.sum(), epsilon)
    return float(((cur - ref) * np.log(cur / ref)).sum())


def check_window(
    baseline: Mapping[str, Any] | None,
    window: Window,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_rows: int = DEFAULT_MIN_ROWS,
    min_labels: int = DEFAULT_MIN_LABELS,
    accuracy_floor: float | None = None,
    notes: Sequence[str] = (),
) -> CheckResult:
    """Run every test the baseline and window allow; see the module docstring for the rule."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import binomtest, chi2_contingency, fisher_exact, norm

    from ingot.monitor.baseline import (
        Calibration,
        binned_calibrated_confidence,
    )

    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha={alpha} must be between 0 and 1")
    if min_rows < 1 or min_labels < 1:
        raise ConfigError("min_rows and min_labels must be at least 1")
    result = CheckResult(status=INSUFFICIENT, rows=int(window.rows), notes=list(notes), alpha=alpha)
    if window.rows < min_rows:
        result.notes.append(f"{window.rows} predictions in the window, fewer than the minimum {min_rows}")
        return result
    tests: list[tuple[str, float, float, str]] = []          # p-value tests: name, statistic, p, detail
    distances: list[tuple[str, float, float, str]] = []      # name, distance, threshold, detail
    base = baseline or {}
    if base:
        result.validation_accuracy = base.get("accuracy")
        reference = np.asarray(base["predicted_class_counts"], dtype=np.int64)
        live = np.asarray(window.class_counts, dtype=np.int64)
        if reference.size != live.size:
            result.notes.append(f"the window has {live.size} classes, the baseline {reference.size}: "
                                "class-prior checks skipped")
        else:
            table = np.vstack([reference, live])
            table = table[:, table.sum(axis=0) > 0]
            if table.shape[1] >= 2:
                chi2, p, dof, _ = chi2_contingency(table, correction=False)
                tests.append(("class_prior_chi2", float(chi2), float(p), f"{dof} degrees of freedom"))
            distance = float(jensenshannon(reference / reference.sum(), live / live.sum(), base=2))
            distances.append(("class_prior_js", distance, JS_THRESHOLD, "Jensen-Shannon distance, base 2"))
        bins = int(base["confidence_bins"])
        live_confidence = rebin(window.confidence_counts, bins)
        reference_confidence = np.asarray(base["confidence_counts"], dtype=np.int64)
        d, p = ks_binned(reference_confidence, live_confidence, 0.0, 1.0)
        tests.append(("confidence_ks", d, p, f"top-1 confidence, {bins} bins"))
        merged = math.gcd(bins, PSI_BINS)
        distances.append(("confidence_psi", psi(rebin(reference_confidence, merged), rebin(live_confidence, merged)),
                          PSI_THRESHOLD, f"{merged} bins"))
        # The ranges come from the stored histograms, so cards made with other bins still compare.
        for name, key, counts in (("input_mean_ks", "input_mean", window.input_mean_counts),
                                  ("input_std_ks", "input_std", window.input_std_counts)):
            histogram = base.get(key)
            if not histogram:
                continue
            if not counts or sum(counts) < min_rows:
                result.notes.append(f"{name}: {sum(counts or [])} rows with input statistics, fewer than {min_rows}")
                continue
            d, p = ks_binned(histogram["counts"], counts, float(histogram["low"]), float(histogram["high"]))
            tests.append((name, d, p, f"per-image pixel {key.split('_')[1]} on 0..255"))
        if base.get("calibration"):
            calibration = Calibration.from_dict(base["calibration"])
            estimate, _, n = binned_calibrated_confidence(calibration, window.confidence_counts)
            expected = float(base["calibrated_confidence_mean"])
            sigma = float(base["calibrated_confidence_std"])
            reference_n = int(base["num_examples"])
            standard_error = max(sigma, 1e-6) * math.sqrt(1.0 / n + 1.0 / reference_n)
            z = (estimate - expected) / standard_error
            result.estimated_accuracy = estimate
            band = (expected - 1.96 * standard_error, expected + 1.96 * standard_error)
            tests.append(("accuracy_estimate", z, float(norm.cdf(z)),
                          f"estimated accuracy {estimate:.4f} vs validation {expected:.4f} "
                          f"(95% band {band[0]:.4f}..{band[1]:.4f})"))
    if window.labelled >= min_labels:
        accuracy = window.correct / window.labelled
        interval = binomtest(int(window.correct), int(window.labelled)).proportion_ci(0.95, method="wilson")
        result.labelled_accuracy = accuracy
        result.labelled_interval = (float(interval.low), float(interval.high))
        reference_accuracy = base.get("accuracy")
        if reference_accuracy is not None:
            reference_n = int(base["num_examples"])
            reference_correct = round(float(reference_accuracy) * reference_n)
            _, p = fisher_exact([[window.correct, window.labelled - window.correct],
                                    [reference_correct, reference_n - reference_correct]], alternative="less")
            tests.append(("labelled_accuracy", accuracy, float(p),
                          f"{window.correct}/{window.labelled} correct, 95% CI {interval.low:.4f}..{interval.high:.4f} "
                          f"vs validation {float(reference_accuracy):.4f}"))
        if accuracy_floor is not None and interval.high < accuracy_floor:
            result.below_floor = True
            result.notes.append(f"labelled accuracy {accuracy:.4f} (95% CI up to {interval.high:.4f}) is below "
                                f"the gate's floor {accuracy_floor:.4f}")
    elif window.labelled:
        result.notes.append(f"{window.labelled} feedback labels, fewer than {min_labels}: labelled accuracy not tested")
    if not tests and result.labelled_accuracy is None:
        result.notes.append("no test could run")
        return result
    threshold = alpha / max(len(tests), 1)
    for name, statistic, p, detail in tests:
        result.tests.append(Finding(name, "p-value", statistic, p, threshold,
                                       DRIFT if p < threshold else "ok", detail))
    for name, distance, limit, detail in distances:
        result.tests.append(Finding(name, "distance", distance, distance, limit,
                                       "large" if distance > limit else "small", detail))
    result.status = DRIFT if result.drifted or result.below_floor else NO_DRIFT
    return result
