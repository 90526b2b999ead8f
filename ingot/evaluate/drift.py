"""The drift baseline: what a model's validation split looked like, stored in its model card
under `drift_baseline` for the drift monitor to compare live traffic with, and the one definition
of the per-image input statistics the gateway logs.

Everything is kept as counts over fixed bins, so a live window is a handful of `GROUP BY bucket`
queries and both sides are binned by the same arithmetic (`bucket_index` here, the monitor's
`bucket_expression` in SQL):

- predicted-class counts on the validation split;
- top-1 confidence counts over `CONFIDENCE_BINS` equal bins of [0, 1];
- counts of the per-image pixel mean and standard deviation (uint8 values, 0..255);
- validation accuracy, and an isotonic calibration map (top-1 confidence -> probability the
  prediction is right) stored as its thresholds, which turns live confidences into a label-free
  accuracy estimate (NannyML's CBPE idea).

Cards written before this baseline existed carry only `confidence_baseline` (class prior and a
20-bin confidence histogram); `DriftBaseline.from_card` reads those too, with what they lack left
out. Only numpy is imported here (scikit-learn inside `Calibration.fit`), so the monitor's small
pod and the gateway import it without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingot.errors import DataError

CARD_KEY = "drift_baseline"
LEGACY_CARD_KEY = "confidence_baseline"  # read from older cards, never written
FORMAT = 1
CONFIDENCE_BINS = 100
CONFIDENCE_RANGE = (0.0, 1.0, CONFIDENCE_BINS)
# (low, high, bins) of the two per-image statistics. The mean of uint8 pixels lies in [0, 255];
# their population standard deviation in [0, 127.5].
INPUT_MEAN_RANGE = (0.0, 256.0, 64)
INPUT_STD_RANGE = (0.0, 128.0, 64)
NO_BASELINE_NOTE = (f"the model card has neither {CARD_KEY!r} nor {LEGACY_CARD_KEY!r}: only labelled "
                    "accuracy can be checked")
_LEGACY_NOTE = (f"the model card has no {CARD_KEY!r} (made before the drift monitor): using its "
                f"{LEGACY_CARD_KEY!r}; no calibration map, so no label-free accuracy estimate, and no "
                "input-statistics histograms, so no input checks. Retrain to get the full baseline")
_NO_INPUTS_NOTE = "the baseline has no input-statistics histograms: input checks skipped"


def bucket_index(values: Sequence[float] | np.ndarray, low: float, high: float, bins: int) -> np.ndarray:
    """Bin of each value: floor((v - low) * bins / (high - low)), clipped to [0, bins - 1], so the
    top edge (confidence 1.0) falls in the last bin. The SQL windows use the same arithmetic."""
    values = np.asarray(values, dtype=np.float64)
    index = np.floor((values - low) * bins / (high - low))
    return np.clip(index, 0, bins - 1).astype(np.int64)


def bucket_midpoints(low: float, high: float, bins: int) -> np.ndarray:
    width = (high - low) / bins
    return low + width * (np.arange(bins) + 0.5)


def bucket_counts(values: Sequence[float] | np.ndarray, low: float, high: float, bins: int) -> list[int]:
    """Counts per bin of `bucket_index`: how the baseline and an in-process window bin values."""
    return np.bincount(bucket_index(values, low, high, bins), minlength=bins).astype(int).tolist()


def input_statistics(images_uint8: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-image mean and (population) standard deviation of all uint8 pixel values, on 0..255:
    THE definition the gateway logs as `input_mean`/`input_std` and the baseline histograms use.

    `images_uint8`: [batch, H, W, C] (or [H, W, C] for one image) of uint8.
    """
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8:
        raise DataError(f"input statistics need uint8 pixels (0..255), got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[np.newaxis]
    if images.ndim != 4 or images.shape[0] == 0 or images[0].size == 0:
        raise DataError(f"input statistics need images shaped [batch, H, W, C], got {list(images.shape)}")
    # From a 256-bin histogram per image: exact, and several times faster than converting the
    # pixels to floats (the gateway computes this on its request path).
    flat = images.reshape(images.shape[0], -1)
    count = flat.shape[1]
    means = np.empty(len(flat))
    stds = np.empty(len(flat))
    for i, pixels in enumerate(flat):
        histogram = np.bincount(pixels, minlength=256).astype(np.float64)
        mean = histogram @ _LEVELS / count
        means[i] = mean
        stds[i] = np.sqrt(max(float(histogram @ _LEVELS_SQUARED / count - mean * mean), 0.0))
    return means, stds


_LEVELS = np.arange(256, dtype=np.float64)
_LEVELS_SQUARED = _LEVELS * _LEVELS


@dataclass(frozen=True)
class Histogram:
    """Counts over `len(counts)` equal bins of [low, high)."""

    low: float
    high: float
    counts: tuple[int, ...]

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray, low: float, high: float, bins: int) -> Histogram:
        return cls(float(low), float(high), tuple(bucket_counts(values, low, high, bins)))

    @property
    def bins(self) -> int:
        return len(self.counts)

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, self.bins + 1)

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "bins": self.bins, "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Histogram:
        return cls(float(values["low"]), float(values["high"]), tuple(int(c) for c in values["counts"]))


@dataclass(frozen=True)
class Calibration:
    """Isotonic map from top-1 confidence to the probability the prediction is right, evaluated
    from its stored thresholds (linear between them, flat outside, as scikit-learn predicts)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or not self.x:
            raise DataError("calibration thresholds must be two equally long, non-empty lists")

    def __call__(self, confidence: Sequence[float] | np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(confidence, dtype=np.float64), self.x, self.y)

    @classmethod
    def fit(cls, confidence: np.ndarray, correct: np.ndarray) -> Calibration:
        """Fitted on the validation split; thresholds rounded as the card stores them, so a
        baseline computed here and one read back from its card are the same."""
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        model.fit(confidence, correct.astype(np.float64))
        return cls(_rounded(model.X_thresholds_), _rounded(model.y_thresholds_))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Calibration:
        return cls(tuple(float(v) for v in values["x"]), tuple(float(v) for v in values["y"]))

    def to_dict(self) -> dict[str, Any]:
        return {"method": "isotonic", "x": list(_rounded(self.x)), "y": list(_rounded(self.y))}


def _rounded(values: Any) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in values)


def binned_calibrated_confidence(calibration: Calibration, confidence_counts: Sequence[int]) -> tuple[float, float, int]:
    """(mean, standard deviation, n) of calibrated confidence over a confidence histogram, each
    row taken at its bin's midpoint: the same computation for the baseline and a live window."""
    counts = np.asarray(confidence_counts, dtype=np.float64)
    n = int(counts.sum())
    if n == 0:
        return float("nan"), float("nan"), 0
    calibrated = calibration(bucket_midpoints(0.0, 1.0, counts.size))
    mean = float((counts * calibrated).sum() / n)
    variance = float((counts * (calibrated - mean) ** 2).sum() / n)
    return mean, variance ** 0.5, n


@dataclass(frozen=True)
class DriftBaseline:
    """The validation split as the drift monitor sees it. Fields a card lacks are None (the
    monitor skips the checks that need them and says so in `notes`)."""

    num_examples: int
    class_names: tuple[str, ...]
    predicted_class_counts: tuple[int, ...]
    confidence: Histogram                          # top-1 confidence over [0, 1]
    accuracy: float | None
    calibration: Calibration | None = None
    calibrated_confidence_mean: float | None = None
    calibrated_confidence_std: float | None = None
    input_mean: Histogram | None = None            # per-image pixel mean, 0..255
    input_std: Histogram | None = None             # per-image pixel standard deviation
    legacy: bool = False                           # read from an older card's `confidence_baseline`

    @classmethod
    def compute(
        cls,
        probabilities: Any,
        labels: Any,
        class_names: Sequence[str],
        images_uint8: Any | None = None,
    ) -> DriftBaseline:
        """The baseline of the validation split: `probabilities` [N, C] are the model's outputs on
        its images, `labels` [N] their true class indices, `images_uint8` [N, H, W, 3] the images as
        the model received them (None leaves out the input-statistics histograms)."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        names = tuple(str(name) for name in class_names)
        if probabilities.ndim != 2 or probabilities.shape[0] == 0:
            raise DataError("a drift baseline needs the validation split's probabilities [N, C], N >= 1")
        n, num_classes = probabilities.shape
        if num_classes != len(names):
            raise DataError(f"{len(names)} class names for {num_classes} model outputs")
        if labels.size != n:
            raise DataError(f"{labels.size} labels for {n} predictions")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise DataError(f"labels must be class indices in [0, {num_classes - 1}]")
        predicted = probabilities.argmax(axis=1)
        confidence = probabilities.max(axis=1)
        correct = predicted == labels
        calibration = Calibration.fit(confidence, correct)
        confidence_histogram = Histogram.of(confidence, *CONFIDENCE_RANGE)
        calibrated_mean, calibrated_std, _ = binned_calibrated_confidence(calibration, confidence_histogram.counts)
        input_mean = input_std = None
        if images_uint8 is not None:
            means, stds = input_statistics(images_uint8)
            if means.size != n:
                raise DataError(f"{means.size} images for {n} predictions")
            input_mean = Histogram.of(means, *INPUT_MEAN_RANGE)
            input_std = Histogram.of(stds, *INPUT_STD_RANGE)
        return cls(
            num_examples=int(n),
            class_names=names,
            predicted_class_counts=tuple(np.bincount(predicted, minlength=num_classes).astype(int).tolist()),
            confidence=confidence_histogram,
            accuracy=float(correct.mean()),
            calibration=calibration,
            calibrated_confidence_mean=calibrated_mean,
            calibrated_confidence_std=calibrated_std,
            input_mean=input_mean,
            input_std=input_std,
        )

    @property
    def notes(self) -> list[str]:
        """What this baseline cannot check, in words for the monitor's report."""
        if self.legacy:
            return [_LEGACY_NOTE]
        return [] if self.input_mean else [_NO_INPUTS_NOTE]

    def to_dict(self) -> dict[str, Any]:
        """The JSON the model card stores under `drift_baseline` (format 1)."""
        return {
            "format": FORMAT,
            "num_examples": self.num_examples,
            "class_names": list(self.class_names),
            "predicted_class_counts": list(self.predicted_class_counts),
            "confidence_bins": self.confidence.bins,
            "confidence_counts": list(self.confidence.counts),
            "accuracy": self.accuracy,
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "calibrated_confidence_mean": self.calibrated_confidence_mean,
            "calibrated_confidence_std": self.calibrated_confidence_std,
            "input_mean": self.input_mean.to_dict() if self.input_mean else None,
            "input_std": self.input_std.to_dict() if self.input_std else None,
        }

    def to_card(self) -> dict[str, Any]:
        """The model-card section: `{"drift_baseline": ...}`, merged into the card as is."""
        return {CARD_KEY: self.to_dict()}

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> DriftBaseline | None:
        """The card's `drift_baseline`, or one made from an older card's `confidence_baseline`
        (`legacy`: no calibration, no input statistics); None when the card has neither."""
        found = card.get(CARD_KEY)
        if isinstance(found, Mapping) and found.get("format") == FORMAT:
            return cls._from_section(found)
        legacy = card.get(LEGACY_CARD_KEY)
        if isinstance(legacy, Mapping) and legacy.get("predicted_class_counts") and legacy.get("confidence_counts"):
            accuracy = (card.get("metrics") or {}).get("accuracy")
            return cls(
                num_examples=int(legacy["num_examples"]),
                class_names=tuple(legacy.get("class_names") or card.get("class_names") or ()),
                predicted_class_counts=tuple(int(c) for c in legacy["predicted_class_counts"]),
                confidence=Histogram(0.0, 1.0, tuple(int(c) for c in legacy["confidence_counts"])),
                accuracy=float(accuracy) if accuracy is not None else None,
                legacy=True,
            )
        return None

    @classmethod
    def _from_section(cls, values: Mapping[str, Any]) -> DriftBaseline:
        def optional_float(key: str) -> float | None:
            return None if values.get(key) is None else float(values[key])

        def histogram(key: str) -> Histogram | None:
            return Histogram.from_dict(values[key]) if values.get(key) else None

        return cls(
            num_examples=int(values["num_examples"]),
            class_names=tuple(str(name) for name in values["class_names"]),
            predicted_class_counts=tuple(int(c) for c in values["predicted_class_counts"]),
            confidence=Histogram(0.0, 1.0, tuple(int(c) for c in values["confidence_counts"])),
            accuracy=optional_float("accuracy"),
            calibration=Calibration.from_dict(values["calibration"]) if values.get("calibration") else None,
            calibrated_confidence_mean=optional_float("calibrated_confidence_mean"),
            calibrated_confidence_std=optional_float("calibrated_confidence_std"),
            input_mean=histogram("input_mean"),
            input_std=histogram("input_std"),
        )
