"""The drift baseline a model card carries under `drift_baseline`, and the one definition of the
per-image input statistics the gateway logs.

Everything the monitor compares is kept as counts over fixed bins, so a live window is a handful
of `GROUP BY bucket` queries (see `ingot.monitor.window`) and both sides are binned by the same
arithmetic (`bucket_index` here, `ingot.monitor.window.bucket_expression` in SQL):

- predicted-class counts on the validation split;
- top-1 confidence counts over `CONFIDENCE_BINS` equal bins of [0, 1];
- counts of the per-image pixel mean and standard deviation (uint8 values, 0..255);
- validation accuracy, and an isotonic calibration map (top-1 confidence -> probability the
  prediction is right) fitted on the validation split, stored as its thresholds, which turns live
  confidences into a label-free accuracy estimate (NannyML's CBPE idea).

Pure numpy/scikit-learn: no TensorFlow, no model; the evaluate step passes what it predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ingot.errors import DataError

CARD_KEY = "drift_baseline"
FORMAT = 1
CONFIDENCE_BINS = 100
# (low, high, bins) of the two per-image statistics. The mean of uint8 pixels lies in [0, 255];
# their population standard deviation in [0, 127.5].
INPUT_MEAN_RANGE = (0.0, 256.0, 64)
INPUT_STD_RANGE = (0.0, 128.0, 64)


def bucket_index(values: Sequence[float] | np.ndarray, low: float, high: float, bins: int) -> np.ndarray:
    """Bin of each value: floor((v - low) * bins / (high - low)), clipped to [0, bins - 1], so the
    top edge (confidence 1.0) falls in the last bin. The SQL windows use the same arithmetic."""
    values = np.asarray(values, dtype=np.float64)
    index = np.floor((values - low) * bins / (high - low))
    return np.clip(index, 0, bins - 1).astype(np.int64)


def bucket_midpoints(low: float, high: float, bins: int) -> np.ndarray:
    width = (high - low) / bins
    return low + width * (np.arange(bins) + 0.5)


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


def _counts(values: np.ndarray, spec: tuple[float, float, int]) -> list[int]:
    low, high, bins = spec
    return np.bincount(bucket_index(values, low, high, bins), minlength=bins).astype(int).tolist()


def _histogram(values: np.ndarray, spec: tuple[float, float, int]) -> dict[str, Any]:
    low, high, bins = spec
    return {"low": low, "high": high, "bins": bins, "counts": _counts(values, spec)}


class Calibration:
    """Isotonic map from top-1 confidence to the probability the prediction is right, evaluated
    from its stored thresholds (linear between them, flat outside, as scikit-learn predicts)."""

    def __init__(self, x: Sequence[float], y: Sequence[float]) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        if self.x.ndim != 1 or self.x.shape != self.y.shape or self.x.size == 0:
            raise DataError("calibration thresholds must be two equally long, non-empty lists")

    def __call__(self, confidence: Sequence[float] | np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(confidence, dtype=np.float64), self.x, self.y)

    @classmethod
    def fit(cls, confidence: np.ndarray, correct: np.ndarray) -> Calibration:
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        model.fit(confidence, correct.astype(np.float64))
        return cls(model.X_thresholds_, model.y_thresholds_)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Calibration:
        return cls(values["x"], values["y"])

    def to_dict(self) -> dict[str, Any]:
        return {"method": "isotonic", "x": [round(float(v), 6) for v in self.x],
                "y": [round(float(v), 6) for v in self.y]}


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


def compute_baseline(
    probabilities: Any,
    labels: Any,
    class_names: Sequence[str],
    images_uint8: Any | None = None,
) -> dict[str, Any]:
    """The JSON-able drift baseline of the validation split (store it as card[CARD_KEY]).

    `probabilities` [N, C] are the model's outputs on the validation images, `labels` [N] their
    true class indices, `images_uint8` [N, H, W, 3] the images as the model received them (None
    leaves out the input-statistics histograms; the monitor then skips those tests).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    names = [str(name) for name in class_names]
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
    confidence_counts = _counts(confidence, (0.0, 1.0, CONFIDENCE_BINS))
    calibrated_mean, calibrated_std, _ = binned_calibrated_confidence(calibration, confidence_counts)
    baseline: dict[str, Any] = {
        "format": FORMAT,
        "num_examples": int(n),
        "class_names": names,
        "predicted_class_counts": np.bincount(predicted, minlength=num_classes).astype(int).tolist(),
        "confidence_bins": CONFIDENCE_BINS,
        "confidence_counts": confidence_counts,
        "accuracy": float(correct.mean()),
        "calibration": calibration.to_dict(),
        "calibrated_confidence_mean": calibrated_mean,
        "calibrated_confidence_std": calibrated_std,
        "input_mean": None,
        "input_std": None,
    }
    if images_uint8 is not None:
        means, stds = input_statistics(images_uint8)
        if means.size != n:
            raise DataError(f"{means.size} images for {n} predictions")
        baseline["input_mean"] = _histogram(means, INPUT_MEAN_RANGE)
        baseline["input_std"] = _histogram(stds, INPUT_STD_RANGE)
    return baseline


def baseline_from_card(card: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The card's drift baseline, falling back to the older `confidence_baseline` (class prior and
    a 20-bin confidence histogram, no calibration, no input statistics), with notes saying what
    is missing and which checks therefore cannot run. (None, notes) when nothing usable is there."""
    found = card.get(CARD_KEY)
    if isinstance(found, Mapping) and found.get("format") == FORMAT:
        notes = []
        if not found.get("input_mean"):
            notes.append("the baseline has no input-statistics histograms: input checks skipped")
        return dict(found), notes
    legacy = card.get("confidence_baseline")
    if isinstance(legacy, Mapping) and legacy.get("predicted_class_counts") and legacy.get("confidence_counts"):
        accuracy = (card.get("metrics") or {}).get("accuracy")
        names = legacy.get("class_names") or card.get("class_names") or []
        baseline = {
            "format": FORMAT,
            "num_examples": int(legacy["num_examples"]),
            "class_names": list(names),
            "predicted_class_counts": list(legacy["predicted_class_counts"]),
            "confidence_bins": len(legacy["confidence_counts"]),
            "confidence_counts": list(legacy["confidence_counts"]),
            "accuracy": float(accuracy) if accuracy is not None else None,
            "calibration": None,
            "calibrated_confidence_mean": None,
            "calibrated_confidence_std": None,
            "input_mean": None,
            "input_std": None,
        }
        return baseline, [
            f"the model card has no {CARD_KEY!r} (made before the drift monitor): using its "
            "'confidence_baseline'; no calibration map, so no label-free accuracy estimate, and no "
            "input-statistics histograms, so no input checks. Retrain to get the full baseline"
        ]
    return None, [
        f"the model card has neither {CARD_KEY!r} nor 'confidence_baseline': only labelled "
        "accuracy can be checked"
    ]
