"""Choosing a confidence cascade's threshold (ingot.gateway.cascade) on the validation split.

The small model answers a row when its top-1 probability is at least the threshold, the full model
otherwise. Every distinct top-1 value of the small model is a possible threshold (nothing between
two of them changes which rows the small model answers), so the curve is exact, not sampled:
for each, the coverage (share of rows the small model answers) and the cascade's accuracy. The
threshold chosen is the lowest one whose accuracy, and that of every higher threshold, is at most
`max_loss_points` percentage points below the full model's alone: the most rows answered cheaply
within the stated loss. Lowering the threshold past a breach of the bound is not allowed even
when the curve dips back under it further down: on a validation split of a few hundred rows
such a dip is one or two lucky rows, not a property of the models.

`calibrate` is pure (numpy arrays in, a Calibration out); `calibrate_models` loads the two
SavedModels and the dataset's validation split for `ingot cascade calibrate`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ingot.errors import ConfigError, ModelError

DEFAULT_MAX_LOSS_POINTS = 0.5
TABLE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    coverage: float         # share of rows the small model answers
    accuracy: float         # the cascade's accuracy
    loss_points: float      # (full alone - cascade) accuracy, in percentage points
    small_accuracy_answered: float | None  # the small model's accuracy on the rows it answers


@dataclass(frozen=True)
class Calibration:
    rows: int
    full_accuracy: float
    small_accuracy: float
    max_loss_points: float
    chosen: CurvePoint | None  # None: no threshold keeps the loss within max_loss_points
    curve: tuple[CurvePoint, ...]  # by threshold, descending (coverage ascending)

    def point_at(self, threshold: float) -> CurvePoint:
        """The cascade's figures at any threshold (the curve point of the rows it lets through)."""
        chosen = [p for p in self.curve if p.threshold >= threshold]
        if chosen:
            return replace_threshold(chosen[-1], threshold)
        return CurvePoint(threshold, 0.0, self.full_accuracy, 0.0, None)

    def table(self, thresholds: tuple[float, ...] = TABLE_THRESHOLDS) -> list[CurvePoint]:
        """A readable slice of the curve: fixed thresholds plus the chosen one, descending."""
        points = {t: self.point_at(t) for t in thresholds}
        if self.chosen is not None:
            points[self.chosen.threshold] = self.chosen
        return [points[t] for t in sorted(points, reverse=True)]

    def as_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "full_accuracy": self.full_accuracy, "small_accuracy": self.small_accuracy,
                "max_loss_points": self.max_loss_points,
                "threshold": self.chosen.threshold if self.chosen is not None else None,
                "chosen": asdict(self.chosen) if self.chosen is not None else None,
                "curve": [asdict(p) for p in self.curve]}


def replace_threshold(point: CurvePoint, threshold: float) -> CurvePoint:
    return CurvePoint(threshold, point.coverage, point.accuracy, point.loss_points, point.small_accuracy_answered)


def calibrate(small_probabilities: Any, full_probabilities: Any, labels: Any, *,
              max_loss_points: float = DEFAULT_MAX_LOSS_POINTS) -> Calibration:
    """The coverage/accuracy curve over every possible threshold and the lowest threshold down to
    which the accuracy loss against the full model alone stays at most `max_loss_points`."""
    small = np.asarray(small_probabilities, dtype=np.float64)
    full = np.asarray(full_probabilities, dtype=np.float64)
    truth = np.asarray(labels).astype(np.int64).reshape(-1)
    if small.ndim != 2 or full.ndim != 2 or small.shape != full.shape or small.shape[0] != truth.shape[0]:
        raise ConfigError(f"cascade calibration needs probabilities [N, C] of both models over the same N labelled "
                          f"rows; got small {small.shape}, full {full.shape}, labels {truth.shape}")
    if truth.shape[0] == 0:
        raise ConfigError("cascade calibration needs at least one labelled validation row")
    if not (np.isfinite(max_loss_points) and max_loss_points >= 0):
        raise ConfigError(f"the maximum accuracy loss must be a number of points >= 0, got {max_loss_points!r}")
    n = truth.shape[0]
    top1 = small.max(axis=1)
    small_correct = small.argmax(axis=1) == truth
    full_correct = full.argmax(axis=1) == truth
    full_accuracy = float(full_correct.mean())
    order = np.argsort(-top1, kind="stable")
    sorted_top1 = top1[order]
    small_hits = np.cumsum(small_correct[order])
    full_hits_taken = np.cumsum(full_correct[order])
    # A threshold equal to sorted_top1[k-1] lets through the first k rows (all ties included).
    ends = np.flatnonzero(np.append(sorted_top1[1:] < sorted_top1[:-1], True)) + 1
    curve = []
    for k in ends:
        correct = small_hits[k - 1] + (full_correct.sum() - full_hits_taken[k - 1])
        accuracy = float(correct / n)
        curve.append(CurvePoint(threshold=float(sorted_top1[k - 1]), coverage=float(k / n), accuracy=accuracy,
                                loss_points=(full_accuracy - accuracy) * 100.0,
                                small_accuracy_answered=float(small_hits[k - 1] / k)))
    chosen = None
    for point in curve:  # thresholds descending: stop at the first breach of the bound
        if point.loss_points > max_loss_points + 1e-9:
            break
        chosen = point
    return Calibration(rows=n, full_accuracy=full_accuracy, small_accuracy=float(small_correct.mean()),
                       max_loss_points=float(max_loss_points), chosen=chosen, curve=tuple(curve))


def curve_figure(calibration: Calibration) -> Any:
    """Coverage and accuracy against the threshold, the chosen threshold marked."""
    from ingot.reports import new_figure

    figure = new_figure(7, 3.5)
    axis = figure.subplots()
    thresholds = [p.threshold for p in calibration.curve]
    axis.plot(thresholds, [p.coverage for p in calibration.curve], label="coverage (small answers)")
    axis.plot(thresholds, [p.accuracy for p in calibration.curve], label="cascade accuracy")
    axis.axhline(calibration.full_accuracy, color="grey", linestyle="--", linewidth=0.8, label="full model alone")
    if calibration.chosen is not None:
        axis.axvline(calibration.chosen.threshold, color="tab:red", linestyle=":",
                     label=f"chosen {calibration.chosen.threshold:.4f}")
    axis.set_xlabel("threshold (small model's top-1 probability)")
    axis.set_ylim(0, 1.02)
    axis.legend(fontsize=8)
    return figure


# ------------------------------------------------------------------ loading the models and data


def resolve_model(spec: str, model: str, repository: str | None) -> str:
    """A SavedModel directory: an integer is a version of MODEL in the model repository, anything
    else a path (or URL) to the SavedModel."""
    from ingot import repository as repo
    from ingot.settings import model_repository

    if spec.isdigit():
        base = repository or model_repository()
        versions = repo.list_versions(base, model)
        if int(spec) not in versions:
            raise ConfigError(f"model {model} has no version {spec} in the model repository {base} "
                              f"(versions: {', '.join(map(str, versions)) or 'none'})")
        return repo.version_path(base, model, int(spec))
    if not os.path.exists(spec) and "://" not in spec:
        raise ConfigError(f"{spec!r} is neither a version number of {model} nor a SavedModel directory")
    return spec


def saved_model_probabilities(path: str, split: Any, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [N, C], labels [N]) of a SavedModel's `serving_default` on a dataset split,
    decoded at the model's own input size as training decodes it."""
    import tensorflow as tf

    from ingot.data.records import decoded_arrays
    from ingot.protocol.signatures import IMAGES_INPUT, PROBABILITIES, SERVING_DEFAULT

    try:
        serve = tf.saved_model.load(path).signatures[SERVING_DEFAULT]
    except Exception as err:  # noqa: BLE001 - any load failure is the same user-facing problem
        raise ModelError(f"cannot load the SavedModel at {path!r}: {err}") from None
    shape = serve.structured_input_signature[1][IMAGES_INPUT].shape
    images, labels = decoded_arrays(split, (int(shape[1]), int(shape[2])))
    out = [np.asarray(serve(**{IMAGES_INPUT: tf.constant(images[i:i + batch_size])})[PROBABILITIES])
           for i in range(0, len(images), batch_size)]
    return (np.concatenate(out) if out else np.zeros((0, 0), np.float32)), labels


def calibrate_models(model: str, small: str, full: str, dataset: str, *, repository: str | None = None,
                     max_loss_points: float = DEFAULT_MAX_LOSS_POINTS) -> Calibration:
    """`calibrate` for two SavedModels (versions of MODEL or paths) on the dataset's validation split."""
    from ingot.data.records import open_dataset_artifact

    artifact = open_dataset_artifact(dataset)
    small_probabilities, labels = saved_model_probabilities(resolve_model(small, model, repository),
                                                            artifact.validation)
    full_probabilities, full_labels = saved_model_probabilities(resolve_model(full, model, repository),
                                                                artifact.validation)
    if not np.array_equal(labels, full_labels) or small_probabilities.shape != full_probabilities.shape:
        raise ModelError(f"the small and full models disagree on the classes of {model}: probabilities "
                         f"{small_probabilities.shape} vs {full_probabilities.shape}; a cascade needs the same classes")
    return calibrate(small_probabilities, full_probabilities, labels, max_loss_points=max_loss_points)
