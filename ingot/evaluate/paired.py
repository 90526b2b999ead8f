"""Paired comparisons and confidence-bound floors for the blessing gate.

A few hundred test rows cannot tell a 1-point difference from noise: which images happen to be
hard moves accuracy by several rows. So the gate judges a candidate by intervals, not by point
estimates: it rejects only on credible evidence (an interval that lies wholly beyond the line).

Accuracy against the champion uses McNemar's construction: only the discordant rows (one model
right, the other wrong) carry information about the difference; conditional on their number, the
rows the candidate alone got right are binomial, so an exact (Clopper–Pearson) interval for that
share maps to an interval for the accuracy difference. The mapping uses the observed discordant
share, so the interval is exact given that share, and conservative in simulation: at a true
difference of exactly −tolerance it rejects 1.5% of the time at 270 rows (2.2% at 3,000) where
2.5% is allowed (benchmarks/bench_gate.py). It stays valid with a handful of discordant rows, where
a bootstrap percentile interval is too narrow (with 3 discordant rows a bootstrap never leaves the
few differences it has seen). Macro F1 has no such exact form, so it uses a
seeded paired bootstrap (the same resampled rows for both models). The bootstrap resamples cell
counts of the joint (label, prediction, prediction) table, which is the same as resampling rows
and costs the same at any number of rows.

Every interval is two-sided at level 1 − alpha, so "credibly below" is a one-sided decision at
alpha / 2. All results are deterministic: the bootstrap's generator is seeded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ingot.errors import ConfigError, DataError

METRICS = ("accuracy", "macro_f1")
DEFAULT_RESAMPLES = 4000
DEFAULT_SEED = 0


def _fraction(name: str, value: float, *, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}={value!r} must be a number")
    value = float(value)
    if not (0.0 < value < 1.0 if open_low else 0.0 <= value <= 1.0):
        raise ConfigError(f"{name}={value!r} is out of range; expected {'0 < x < 1' if open_low else '0 <= x <= 1'}")
    return value


def class_ids(predictions: Any, n: int | None = None, *, name: str = "predictions") -> np.ndarray:
    """Predicted class ids [N] from ids [N] or probabilities [N, C] (argmax), checked for length."""
    values = np.asarray(predictions)
    if values.ndim == 2:
        values = values.argmax(axis=1)
    if values.ndim != 1:
        raise DataError(f"{name} must be class ids [N] or probabilities [N, C], got shape {list(values.shape)}")
    if values.size and not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.equal(np.mod(values, 1), 0)):
            raise DataError(f"{name} must be integer class ids")
    ids = values.astype(np.int64)
    if n is not None and ids.size != n:
        raise DataError(f"{name} has {ids.size} rows but there are {n} labels; both models must be scored "
                        "on the same test rows")
    if ids.size and ids.min() < 0:
        raise DataError(f"{name} has negative class ids")
    return ids


def _num_classes(num_classes: int | None, *arrays: np.ndarray) -> int:
    seen = max(int(a.max()) for a in arrays) + 1
    if num_classes is None:
        return max(seen, 2)
    if seen > num_classes:
        raise DataError(f"class id {seen - 1} is out of range for {num_classes} classes")
    return int(num_classes)


def accuracy_difference_interval(
    champion_only: Any, candidate_only: Any, n: Any, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact McNemar interval for candidate − champion accuracy (vectorised over its arguments).

    Given d = b + c discordant rows (b: champion alone right, c: candidate alone right), c is
    Binomial(d, π); the Clopper–Pearson interval [π_L, π_U] for π maps to
    d/n · (2π − 1), the accuracy difference. No discordant rows gives [0, 0].
    """
    from scipy.stats import beta

    b = np.asarray(champion_only, dtype=np.float64)
    c = np.asarray(candidate_only, dtype=np.float64)
    rows = np.asarray(n, dtype=np.float64)
    d = b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(c > 0, beta.ppf(alpha / 2, np.maximum(c, 1), b + 1), 0.0)
        high = np.where(b > 0, beta.ppf(1 - alpha / 2, c + 1, np.maximum(b, 1)), 1.0)
    share = np.where(rows > 0, d / np.maximum(rows, 1), 0.0)
    return share * (2 * low - 1), share * (2 * high - 1)


def _f1_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class F1 from confusion matrices [..., K, K] (rows true, columns predicted); a class
    with no true and no predicted rows scores 0, as scikit-learn's zero_division=0."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    denominator = confusion.sum(axis=-1) + confusion.sum(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def _resampled_cells(codes: np.ndarray, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct cell and its counts: (cells [m], counts [1 + resamples, m]), row 0 observed,
    the rest bootstrap draws. Resampling rows with replacement is a multinomial draw over the
    cells' observed shares, so the row order never matters."""
    cells, observed = np.unique(codes, return_counts=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(int(codes.size), observed / codes.size, size=resamples)
    return cells, np.vstack([observed, counts]).astype(np.float64)


def _confusions(counts: np.ndarray, true: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices [resamples, K, K] from cell counts and each cell's (true, predicted)."""
    onehot = np.zeros((true.size, k * k))
    onehot[np.arange(true.size), true * k + predicted] = 1.0
    return (counts @ onehot).reshape(-1, k, k)


def _check_resamples(resamples: int) -> int:
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise ConfigError(f"resamples={resamples!r} must be an integer of at least 100")
    return resamples


@dataclass(frozen=True)
class PairedComparison:
    """Candidate vs champion on the same rows. `difference` is candidate − champion; `regressed`
    is True only when the whole interval lies below −tolerance."""

    metric: str
    champion: float
    candidate: float
    difference: float
    interval: tuple[float, float]
    alpha: float
    tolerance: float
    regressed: bool
    n: int
    champion_only: int  # rows the champion got right and the candidate wrong
    candidate_only: int  # rows the candidate got right and the champion wrong
    method: str
    resamples: int | None = None
    seed: int | None = None

    @property
    def discordant(self) -> int:
        return self.champion_only + self.candidate_only

    @property
    def level(self) -> float:
        return 1.0 - self.alpha

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["interval"] = list(self.interval)
        values["discordant"] = self.discordant
        return values

    def text(self) -> str:
        label = "accuracy" if self.metric == "accuracy" else "macro F1"
        lo, hi = self.interval
        verdict = (f"credibly worse than the champion by more than {self.tolerance:g}" if self.regressed
                   else f"no credible regression beyond {self.tolerance:g}")
        return (f"{label} {self.difference:+.3f} vs champion ({self.candidate:.4f} vs {self.champion:.4f} on the "
                f"same {self.n} rows, {self.discordant} discordant), {_percent(self.level)} interval "
                f"[{lo:+.3f}, {hi:+.3f}]: {verdict}")

    def __str__(self) -> str:
        return self.text()


def _percent(level: float) -> str:
    text = f"{100 * level:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def compare_paired(
    y_true: Any,
    champion_pred: Any,
    candidate_pred: Any,
    *,
    tolerance: float,
    alpha: float,
    metric: str = "accuracy",
    num_classes: int | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> PairedComparison:
    """Compare two models scored on the same rows (class ids [N] or probabilities [N, C]).

    accuracy: exact McNemar interval (valid with few discordant rows; see the module docstring);
    macro_f1: seeded paired bootstrap percentile interval. Same inputs, same result.
    """
    if metric not in METRICS:
        raise ConfigError(f"metric={metric!r}; expected one of {', '.join(METRICS)}")
    tolerance = _fraction("tolerance", tolerance)
    alpha = _fraction("alpha", alpha, open_low=True)
    labels = class_ids(y_true, name="labels")
    if labels.size == 0:
        raise DataError("cannot compare models on zero rows")
    champion = class_ids(champion_pred, labels.size, name="champion predictions")
    candidate = class_ids(candidate_pred, labels.size, name="candidate predictions")
    champion_right, candidate_right = champion == labels, candidate == labels
    b = int(np.sum(champion_right & ~candidate_right))
    c = int(np.sum(candidate_right & ~champion_right))
    n = int(labels.size)

    if metric == "accuracy":
        low, high = accuracy_difference_interval(b, c, n, alpha)
        interval = (float(low), float(high))
        champion_value, candidate_value = float(champion_right.mean()), float(candidate_right.mean())
        return PairedComparison(
            metric=metric, champion=champion_value, candidate=candidate_value, difference=(c - b) / n,
            interval=interval, regressed=interval[1] < -tolerance, method="exact McNemar (Clopper-Pearson)",
            alpha=alpha, tolerance=tolerance, n=n, champion_only=b, candidate_only=c,
        )

    resamples = _check_resamples(resamples)
    k = _num_classes(num_classes, labels, champion, candidate)
    # One cell per (label, champion, candidate) triple. Row 0 of the counts is the observed table,
    # so the point estimate and the replicates share one formula (it equals scikit-learn's macro
    # F1 with zero_division=0; the tests check that).
    cells, counts = _resampled_cells((labels * k + champion) * k + candidate, resamples, seed)
    true, champion_cell, candidate_cell = cells // (k * k), (cells // k) % k, cells % k
    champion_f1 = _f1_from_confusion(_confusions(counts, true, champion_cell, k)).mean(axis=1)
    candidate_f1 = _f1_from_confusion(_confusions(counts, true, candidate_cell, k)).mean(axis=1)
    champion_value, candidate_value = float(champion_f1[0]), float(candidate_f1[0])
    differences = candidate_f1[1:] - champion_f1[1:]
    low, high = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    interval = (float(low), float(high))
    return PairedComparison(
        metric=metric, champion=champion_value, candidate=candidate_value,
        difference=candidate_value - champion_value, interval=interval, regressed=interval[1] < -tolerance,
        method="paired bootstrap (percentile)", resamples=resamples, seed=seed,
        alpha=alpha, tolerance=tolerance, n=n, champion_only=b, candidate_only=c,
    )


@dataclass(frozen=True)
class FloorCheck:
    """One absolute floor judged by its interval: `below` only when the upper bound is under it."""

    name: str
    value: float
    interval: tuple[float, float]
    floor: float
    alpha: float  # the level the interval was built at (after any multiplicity correction)
    n: int
    method: str

    @property
    def below(self) -> bool:
        return self.interval[1] < self.floor

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["interval"] = list(self.interval)
        values["below"] = self.below
        return values

    def text(self, label: str) -> str:
        lo, hi = self.interval
        verdict = (f"credibly below the floor {self.floor:.4f}" if self.below
                   else f"not credibly below the floor {self.floor:.4f}")
        return f"{label} {self.value:.4f}, {_percent(1 - self.alpha)} interval [{lo:.3f}, {hi:.3f}]: {verdict}"


def accuracy_floor(correct: int, n: int, *, floor: float, alpha: float) -> FloorCheck:
    """Overall accuracy against a floor by its exact Clopper–Pearson interval."""
    from scipy.stats import binomtest

    alpha = _fraction("alpha", alpha, open_low=True)
    floor = _fraction("floor", floor)
    if n <= 0 or not 0 <= correct <= n:
        raise DataError(f"accuracy needs 0 <= correct <= n and n > 0, got correct={correct}, n={n}")
    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=1 - alpha, method="exact")
    return FloorCheck(name="accuracy", value=correct / n, interval=(float(ci.low), float(ci.high)), floor=floor,
                      alpha=alpha, n=int(n), method="exact Clopper-Pearson")


def class_f1_floors(
    y_true: Any,
    predictions: Any,
    *,
    floor: float,
    alpha: float,
    num_classes: int | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> list[FloorCheck]:
    """Every class's F1 against one floor by a seeded bootstrap interval, one per class.

    The classes are one family of tests, so each interval is at level 1 − alpha / K
    (Bonferroni): with K classes sitting exactly at the floor, the chance that any one of them is
    failed stays at most alpha / 2.
    """
    alpha = _fraction("alpha", alpha, open_low=True)
    floor = _fraction("floor", floor)
    resamples = _check_resamples(resamples)
    labels = class_ids(y_true, name="labels")
    if labels.size == 0:
        raise DataError("cannot judge class F1 on zero rows")
    predicted = class_ids(predictions, labels.size)
    k = _num_classes(num_classes, labels, predicted)
    family_alpha = alpha / k
    cells, counts = _resampled_cells(labels * k + predicted, resamples, seed)
    every = _f1_from_confusion(_confusions(counts, cells // k, cells % k, k))
    f1, replicates = every[0], every[1:]
    low, high = np.quantile(replicates, [family_alpha / 2, 1 - family_alpha / 2], axis=0)
    return [
        FloorCheck(name=str(i), value=float(f1[i]), interval=(float(low[i]), float(high[i])), floor=floor,
                   alpha=family_alpha, n=int(labels.size), method=f"bootstrap (percentile, Bonferroni over {k})")
        for i in range(k)
    ]

