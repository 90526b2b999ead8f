"""Drift tests of one window of live predictions against the model card's baseline (scipy.stats).

Both sides are counts over the same bins (`ingot.evaluate.drift`), so every test works on
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
| `embedding_mmd` | RBF MMD² of captured inputs' embeddings vs the card's reference (`monitor.embedding`) | permutation p-value |
| `embedding_classifier` | held-out AUC of a classifier telling the two embedding samples apart (`monitor.domain_classifier`) | Mann-Whitney p-value |

A p-value test named in `ADVISORY_TESTS` is computed and reported but does not decide: it is left
out of the Bonferroni family (m counts only deciding tests) and its verdict reads `drift
(advisory)` when it falls below the family's threshold. Which tests are advisory is chosen from
`benchmarks/bench_monitor.py --embedding-shifts` (docs/monitor.md): a test decides only if it
detects no later than the family without it on every measured shift and earlier on at least one.

Each test is one function in `CHECKS` returning a typed `Measurement` (or a `Skipped` note);
`family` assembles the Bonferroni family. Multiple testing: Bonferroni over the p-value tests that
ran. With family-wise level `alpha`
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
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ingot.errors import ConfigError
from ingot.evaluate.drift import (
    CONFIDENCE_RANGE,
    INPUT_MEAN_RANGE,
    INPUT_STD_RANGE,
    DriftBaseline,
    binned_calibrated_confidence,
    bucket_counts,
    bucket_midpoints,
)
from ingot.monitor.embedding import EmbeddingWindow

DRIFT = "drift"
ADVISORY_DRIFT = "drift (advisory)"  # an advisory test below the threshold: reported, never deciding
NO_DRIFT = "no drift"
INSUFFICIENT = "insufficient data"
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_ROWS = 200
DEFAULT_MIN_LABELS = 50
JS_THRESHOLD = 0.1
PSI_THRESHOLD = 0.25  # the conventional "significant shift" level
PSI_BINS = 10
# Computed and reported, never deciding (see the module docstring and docs/monitor.md for the figures).
ADVISORY_TESTS: frozenset[str] = frozenset({"embedding_classifier"})
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

        def counts(values: Any, spec: tuple[float, float, int]) -> list[int] | None:
            return None if values is None else bucket_counts(values, *spec)

        flags = None if correct is None else np.asarray(correct, dtype=bool)
        return cls(
            rows=len(class_ids),
            class_counts=np.bincount(np.asarray(class_ids, dtype=np.int64), minlength=num_classes).astype(int).tolist(),
            confidence_counts=counts(confidences, CONFIDENCE_RANGE) or [],
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
    advisory: bool = False    # a p-value test outside the deciding family (ADVISORY_TESTS)

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
        return [t.name for t in self.tests if t.kind == "p-value" and not t.advisory and t.verdict == DRIFT]

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


P_VALUE = "p-value"
DISTANCE = "distance"


@dataclass(frozen=True)
class Measurement:
    """What one test measured, before the Bonferroni family sets the p-value threshold."""

    name: str
    kind: str                 # P_VALUE or DISTANCE
    statistic: float
    value: float              # the p-value or the distance
    detail: str
    limit: float = 0.0        # a distance's conventional threshold; unused for p-values


@dataclass(frozen=True)
class Skipped:
    """A test the window or baseline could not feed, with the note saying why."""

    note: str


@dataclass(frozen=True)
class AccuracyEstimate:
    """Mean calibrated confidence of the window against the validation split's (label-free)."""

    estimate: float
    expected: float
    standard_error: float

    @property
    def z(self) -> float:
        return (self.estimate - self.expected) / self.standard_error


@dataclass(frozen=True)
class LabelledAccuracy:
    """Accuracy on the window's feedback labels with its 95% Wilson interval."""

    correct: int
    labelled: int
    interval: tuple[float, float]

    @property
    def accuracy(self) -> float:
        return self.correct / self.labelled


@dataclass(frozen=True)
class CheckInputs:
    """What every check reads; the two accuracy figures are computed once, before the checks."""

    baseline: DriftBaseline | None
    window: Window
    min_rows: int
    estimate: AccuracyEstimate | None
    labelled: LabelledAccuracy | None
    embeddings: EmbeddingWindow | str | None = None  # the two samples, or why the check cannot run


Check = Callable[[CheckInputs], Measurement | Skipped | None]


def estimate_accuracy(baseline: DriftBaseline | None, window: Window) -> AccuracyEstimate | None:
    if baseline is None or baseline.calibration is None:
        return None
    estimate, _, n = binned_calibrated_confidence(baseline.calibration, window.confidence_counts)
    sigma = float(baseline.calibrated_confidence_std or 0.0)
    standard_error = max(sigma, 1e-6) * math.sqrt(1.0 / n + 1.0 / baseline.num_examples)
    return AccuracyEstimate(estimate, float(baseline.calibrated_confidence_mean or 0.0), standard_error)


def labelled_window_accuracy(window: Window, min_labels: int) -> LabelledAccuracy | None:
    if window.labelled < min_labels:
        return None
    from scipy.stats import binomtest

    interval = binomtest(int(window.correct), int(window.labelled)).proportion_ci(0.95, method="wilson")
    return LabelledAccuracy(int(window.correct), int(window.labelled), (float(interval.low), float(interval.high)))


def _class_tables(inputs: CheckInputs) -> tuple[np.ndarray, np.ndarray] | Skipped | None:
    if inputs.baseline is None:
        return None
    reference = np.asarray(inputs.baseline.predicted_class_counts, dtype=np.int64)
    live = np.asarray(inputs.window.class_counts, dtype=np.int64)
    if reference.size != live.size:
        return Skipped(f"the window has {live.size} classes, the baseline {reference.size}: class-prior checks skipped")
    return reference, live


def class_prior_chi2(inputs: CheckInputs) -> Measurement | Skipped | None:
    tables = _class_tables(inputs)
    if not isinstance(tables, tuple):
        return tables                  # the mismatch is noted once, here
    from scipy.stats import chi2_contingency

    table = np.vstack(tables)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return None
    chi2, p, dof, _ = chi2_contingency(table, correction=False)
    return Measurement("class_prior_chi2", P_VALUE, float(chi2), float(p), f"{dof} degrees of freedom")


def class_prior_js(inputs: CheckInputs) -> Measurement | Skipped | None:
    tables = _class_tables(inputs)
    if not isinstance(tables, tuple):
        return None
    from scipy.spatial.distance import jensenshannon

    reference, live = tables
    distance = float(jensenshannon(reference / reference.sum(), live / live.sum(), base=2))
    return Measurement("class_prior_js", DISTANCE, distance, distance, "Jensen-Shannon distance, base 2", JS_THRESHOLD)


def _confidence(inputs: CheckInputs) -> tuple[np.ndarray, np.ndarray] | None:
    """(baseline, live) confidence counts over the baseline's bins."""
    if inputs.baseline is None:
        return None
    histogram = inputs.baseline.confidence
    return np.asarray(histogram.counts, dtype=np.int64), rebin(inputs.window.confidence_counts, histogram.bins)


def confidence_ks(inputs: CheckInputs) -> Measurement | Skipped | None:
    pair = _confidence(inputs)
    if pair is None:
        return None
    d, p = ks_binned(*pair, 0.0, 1.0)
    return Measurement("confidence_ks", P_VALUE, d, p, f"top-1 confidence, {pair[0].size} bins")


def confidence_psi(inputs: CheckInputs) -> Measurement | Skipped | None:
    pair = _confidence(inputs)
    if pair is None:
        return None
    merged = math.gcd(pair[0].size, PSI_BINS)
    distance = psi(rebin(pair[0], merged), rebin(pair[1], merged))
    return Measurement("confidence_psi", DISTANCE, distance, distance, f"{merged} bins", PSI_THRESHOLD)


def _input_ks(name: str, statistic: str) -> Check:
    """KS on one per-image pixel statistic; the range comes from the stored histogram, so cards
    made with other bins still compare."""

    def check(inputs: CheckInputs) -> Measurement | Skipped | None:
        if inputs.baseline is None:
            return None
        histogram = getattr(inputs.baseline, f"input_{statistic}")
        counts = getattr(inputs.window, f"input_{statistic}_counts")
        if histogram is None:
            return None
        if not counts or sum(counts) < inputs.min_rows:
            return Skipped(f"{name}: {sum(counts or [])} rows with input statistics, fewer than {inputs.min_rows}")
        d, p = ks_binned(histogram.counts, counts, histogram.low, histogram.high)
        return Measurement(name, P_VALUE, d, p, f"per-image pixel {statistic} on 0..255")

    check.__name__ = name
    return check


def accuracy_estimate(inputs: CheckInputs) -> Measurement | Skipped | None:
    found = inputs.estimate
    if found is None:
        return None
    from scipy.stats import norm

    low, high = found.expected - 1.96 * found.standard_error, found.expected + 1.96 * found.standard_error
    return Measurement("accuracy_estimate", P_VALUE, found.z, float(norm.cdf(found.z)),
                       f"estimated accuracy {found.estimate:.4f} vs validation {found.expected:.4f} "
                       f"(95% band {low:.4f}..{high:.4f})")


def labelled_accuracy(inputs: CheckInputs) -> Measurement | Skipped | None:
    found, baseline = inputs.labelled, inputs.baseline
    if found is None or baseline is None or baseline.accuracy is None:
        return None
    from scipy.stats import fisher_exact

    reference_n = baseline.num_examples
    reference_correct = round(baseline.accuracy * reference_n)
    _, p = fisher_exact([[found.correct, found.labelled - found.correct],
                         [reference_correct, reference_n - reference_correct]], alternative="less")
    low, high = found.interval
    return Measurement("labelled_accuracy", P_VALUE, found.accuracy, float(p),
                       f"{found.correct}/{found.labelled} correct, 95% CI {low:.4f}..{high:.4f} "
                       f"vs validation {baseline.accuracy:.4f}")


def embedding_mmd(inputs: CheckInputs) -> Measurement | Skipped | None:
    found = inputs.embeddings
    if found is None:
        return None
    if isinstance(found, str):
        return Skipped(found)
    if found.window.shape[0] < inputs.min_rows:
        return Skipped(f"embedding_mmd: {found.window.shape[0]} captured inputs, fewer than {inputs.min_rows}")
    from ingot.monitor.embedding import mmd_test

    result = mmd_test(found.reference, found.window, permutations=found.permutations, seed=found.seed)
    return Measurement("embedding_mmd", P_VALUE, result.statistic, result.p_value,
                       f"RBF MMD² {result.reference_rows} reference vs {result.window_rows} window embeddings, "
                       f"bandwidth {result.bandwidth:.4g}, {result.permutations} permutations")


def embedding_classifier(inputs: CheckInputs) -> Measurement | Skipped | None:
    found = inputs.embeddings
    if not isinstance(found, EmbeddingWindow) or found.window.shape[0] < inputs.min_rows:
        return None  # embedding_mmd's note already says why
    from ingot.monitor.domain_classifier import domain_classifier_test

    result = domain_classifier_test(found.reference, found.window, seed=found.seed)
    return Measurement("embedding_classifier", P_VALUE, result.auc, result.p_value,
                       f"{result.classifier} classifier, held-out AUC {result.auc:.3f} on {result.holdout_rows} rows "
                       f"({result.rows_each} each side), accuracy {result.accuracy:.3f}")


# Every test, in the order the report lists them (p-values first, then distances, each in this order).
CHECKS: tuple[Check, ...] = (
    class_prior_chi2,
    class_prior_js,
    confidence_ks,
    confidence_psi,
    _input_ks("input_mean_ks", "mean"),
    _input_ks("input_std_ks", "std"),
    accuracy_estimate,
    labelled_accuracy,
    embedding_mmd,
    embedding_classifier,
)


def family(measured: Sequence[Measurement], alpha: float,
           advisory: Collection[str] = ADVISORY_TESTS) -> list[Finding]:
    """The Bonferroni family: each deciding p-value test decides at alpha / m (m: the deciding
    p-value tests that ran); advisory p-value tests are judged at the same threshold without
    deciding; distances are advisory and listed last."""
    pvalues = [m for m in measured if m.kind == P_VALUE]
    threshold = alpha / max(sum(m.name not in advisory for m in pvalues), 1)
    findings = []
    for m in pvalues:
        aside = m.name in advisory
        flagged = (ADVISORY_DRIFT if aside else DRIFT) if m.value < threshold else "ok"
        findings.append(Finding(m.name, P_VALUE, m.statistic, m.value, threshold, flagged, m.detail, aside))
    findings += [Finding(m.name, DISTANCE, m.statistic, m.value, m.limit, "large" if m.value > m.limit else "small",
                         m.detail) for m in measured if m.kind == DISTANCE]
    return findings


def check_window(
    baseline: DriftBaseline | None,
    window: Window,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_rows: int = DEFAULT_MIN_ROWS,
    min_labels: int = DEFAULT_MIN_LABELS,
    accuracy_floor: float | None = None,
    notes: Sequence[str] = (),
    embeddings: EmbeddingWindow | str | None = None,
    advisory: Collection[str] = ADVISORY_TESTS,
) -> CheckResult:
    """Run every test the baseline and window allow; see the module docstring for the rule."""
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha={alpha} must be between 0 and 1")
    if min_rows < 1 or min_labels < 1:
        raise ConfigError("min_rows and min_labels must be at least 1")
    result = CheckResult(status=INSUFFICIENT, rows=int(window.rows), notes=list(notes), alpha=alpha)
    if window.rows < min_rows:
        result.notes.append(f"{window.rows} predictions in the window, fewer than the minimum {min_rows}")
        return result
    inputs = CheckInputs(baseline, window, min_rows, estimate_accuracy(baseline, window),
                         labelled_window_accuracy(window, min_labels), embeddings)
    measured: list[Measurement] = []
    for check in CHECKS:
        outcome = check(inputs)
        if isinstance(outcome, Skipped):
            result.notes.append(outcome.note)
        elif outcome is not None:
            measured.append(outcome)
    if baseline is not None:
        result.validation_accuracy = baseline.accuracy
    if inputs.estimate is not None:
        result.estimated_accuracy = inputs.estimate.estimate
    if inputs.labelled is not None:
        low, high = inputs.labelled.interval
        result.labelled_accuracy = inputs.labelled.accuracy
        result.labelled_interval = inputs.labelled.interval
        if accuracy_floor is not None and high < accuracy_floor:
            result.below_floor = True
            result.notes.append(f"labelled accuracy {result.labelled_accuracy:.4f} (95% CI up to {high:.4f}) is "
                                f"below the gate's floor {accuracy_floor:.4f}")
    elif window.labelled:
        result.notes.append(f"{window.labelled} feedback labels, fewer than {min_labels}: labelled accuracy not tested")
    if not any(m.kind == P_VALUE and m.name not in advisory for m in measured) and result.labelled_accuracy is None:
        result.notes.append("no test could run")
        return result
    result.tests = family(measured, alpha, advisory)
    result.status = DRIFT if result.drifted or result.below_floor else NO_DRIFT
    return result
