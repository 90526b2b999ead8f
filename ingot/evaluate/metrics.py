"""Test-set metrics and calibration (the validation split's drift baseline is `ingot.evaluate.drift`).

Scikit-learn computes the classification metrics so our numbers mean what everyone else's mean.
Expected calibration error (ECE) uses 15 equal-width confidence bins over [0, 1] (Guo et al.,
"On Calibration of Modern Neural Networks", 2017): each prediction's confidence is its top
probability; bin i holds confidences in (i/15, (i+1)/15] (the first bin also holds 0), and
ECE = sum over bins of (bin size / N) * |accuracy in bin - mean confidence in bin|.
0 means perfectly calibrated; an overconfident model has a large ECE even when accurate.

TensorFlow and scikit-learn are imported inside functions so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ingot.errors import ConfigError, DataError, ModelError

ECE_BINS = 15
_PROBABILITY_TOLERANCE = 1e-3


@dataclass
class EvaluationReport:
    """Metrics of one model on one labelled set; `to_dict()` is what model cards and gates read.

    `per_class` maps class name to precision, recall, f1 and support; `confusion_matrix` rows are
    true classes and columns predicted classes, both in `class_names` order.
    """

    class_names: list[str]
    num_examples: int
    accuracy: float
    macro_f1: float
    weighted_f1: float
    per_class: dict[str, dict[str, float]]
    confusion_matrix: list[list[int]]
    ece: float
    mean_confidence: float
    ece_bins: int = ECE_BINS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaluationReport:
        """Rebuild from `to_dict()` output (a model card's metrics, a pipeline artifact)."""
        if not isinstance(values, dict):
            raise ConfigError(f"an evaluation report must be a mapping, got {type(values).__name__}")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.name != "ece_bins"}
        missing = sorted(required - set(values))
        if missing:
            raise ConfigError(
                f"evaluation report is missing key(s) {', '.join(missing)}; expected the keys of "
                f"EvaluationReport.to_dict(): {', '.join(sorted(names))}"
            )
        known = {key: values[key] for key in names if key in values}
        known["class_names"] = [str(name) for name in known["class_names"]]
        known["per_class"] = {str(k): dict(v) for k, v in known["per_class"].items()}
        known["confusion_matrix"] = [[int(c) for c in row] for row in known["confusion_matrix"]]
        return cls(**known)

    def per_class_table(self) -> str:
        """A fixed-width table like scikit-learn's classification_report, for logs and the CLI."""
        width = max([len("macro avg"), *(len(name) for name in self.class_names)])
        header = f"{'class':<{width}}  {'precision':>9}  {'recall':>6}  {'f1':>6}  {'support':>7}"
        lines = [header, "-" * len(header)]
        for name in self.class_names:
            row = self.per_class[name]
            lines.append(
                f"{name:<{width}}  {row['precision']:>9.3f}  {row['recall']:>6.3f}  "
                f"{row['f1']:>6.3f}  {int(row['support']):>7d}"
            )
        lines.append("-" * len(header))
        macro_p = float(np.mean([self.per_class[n]["precision"] for n in self.class_names]))
        macro_r = float(np.mean([self.per_class[n]["recall"] for n in self.class_names]))
        lines.append(
            f"{'macro avg':<{width}}  {macro_p:>9.3f}  {macro_r:>6.3f}  "
            f"{self.macro_f1:>6.3f}  {self.num_examples:>7d}"
        )
        lines.append(f"{'accuracy':<{width}}  {'':>9}  {'':>6}  {self.accuracy:>6.3f}  {self.num_examples:>7d}")
        lines.append(f"{'ECE':<{width}}  {'':>9}  {'':>6}  {self.ece:>6.3f}")
        return "\n".join(lines)


def expected_calibration_error(
    confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE over `bins` equal-width bins (see the module docstring for the exact definition)."""
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidences.shape != correct.shape or confidences.ndim != 1:
        raise DataError(
            f"confidences {confidences.shape} and correct {correct.shape} must be 1-D and the same length"
        )
    if confidences.size == 0:
        raise DataError("cannot compute calibration error over zero predictions")
    if bins < 1:
        raise ConfigError(f"bins={bins} must be at least 1")
    index = np.clip(np.ceil(confidences * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = index == b
        count = int(in_bin.sum())
        if count:
            gap = abs(correct[in_bin].mean() - confidences[in_bin].mean())
            total += count / confidences.size * gap
    return float(total)


def _check_probabilities(probabilities: np.ndarray, num_classes: int) -> None:
    if probabilities.ndim != 2 or probabilities.shape[1] != num_classes:
        raise ModelError(
            f"model outputs have shape {list(probabilities.shape)}; expected [batch, {num_classes}] "
            f"(one probability per class name)"
        )
    sums = probabilities.sum(axis=1)
    if (probabilities < -_PROBABILITY_TOLERANCE).any() or np.abs(sums - 1.0).max() > _PROBABILITY_TOLERANCE:
        raise ModelError(
            "model outputs are not probabilities (each row must be non-negative and sum to 1); "
            "end the model with a softmax"
        )


def evaluate_predictions(
    labels: Sequence[int] | np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> EvaluationReport:
    """Metrics from true labels and predicted probabilities [N, C]; the model-free core."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    class_names = [str(name) for name in class_names]
    if len(class_names) < 2:
        raise DataError(f"need at least two class names to evaluate a classifier, got {class_names}")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.size == 0:
        raise DataError("the evaluation set is empty; expected at least one labelled image")
    _check_probabilities(probabilities, len(class_names))
    if probabilities.shape[0] != labels.size:
        raise DataError(f"{labels.size} labels but {probabilities.shape[0]} predictions")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise DataError(
            f"labels must be class indices in [0, {len(class_names) - 1}]; found {labels.min()}..{labels.max()}"
        )
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    class_ids = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=class_ids, zero_division=0
    )
    _, _, weighted_f1, _ = precision_recall_fscore_support(
        labels, predicted, labels=class_ids, average="weighted", zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    return EvaluationReport(
        class_names=class_names,
        num_examples=int(labels.size),
        accuracy=float(accuracy_score(labels, predicted)),
        macro_f1=float(np.mean(f1)),
        weighted_f1=float(weighted_f1),
        per_class=per_class,
        confusion_matrix=confusion_matrix(labels, predicted, labels=class_ids).astype(int).tolist(),
        ece=expected_calibration_error(confidence, predicted == labels, ECE_BINS),
        mean_confidence=float(confidence.mean()),
    )


def _as_dataset(model: Any, data: Any) -> Any:
    """Accept a tf.data.Dataset of (images, labels) batches, LabelledImages, or (images, labels)."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        return data
    if hasattr(data, "labels") and hasattr(data, "class_names"):
        from ingot.data.pipeline import make_tf_dataset

        image_size = tuple(int(d) for d in model.input_shape[1:3])
        return make_tf_dataset(
            data, image_size=image_size, batch_size=64, training=False, augmentation=None, seed=0
        )
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = data
        return tf.data.Dataset.from_tensor_slices((np.asarray(images), np.asarray(labels))).batch(64)
    raise DataError(
        f"cannot evaluate on {type(data).__name__}; expected a tf.data.Dataset of (images, labels) "
        "batches, LabelledImages, or an (images, labels) tuple of arrays"
    )


def predict_labelled(model: Any, data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Run the model over every batch once: (true labels [N], probabilities [N, C])."""
    import tensorflow as tf

    dataset = _as_dataset(model, data)
    labels: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    for element in dataset:
        if not isinstance(element, (tuple, list)) or len(element) != 2:
            raise DataError("the evaluation dataset must yield (images, labels) batches")
        images, batch_labels = element
        output = model(tf.cast(images, tf.float32), training=False)
        probabilities.append(np.asarray(tf.cast(output, tf.float32)))
        labels.append(np.asarray(batch_labels).reshape(-1))
    if not labels:
        raise DataError("the evaluation dataset is empty; expected at least one (images, labels) batch")
    return np.concatenate(labels).astype(np.int64), np.concatenate(probabilities, axis=0)


def evaluate_model(model: Any, data: Any, class_names: Sequence[str]) -> EvaluationReport:
    """Evaluate a Keras classifier (raw 0..255 pixels in, softmax out) on a labelled set."""
    data_classes = getattr(data, "class_names", None)
    if data_classes is not None and list(data_classes) != list(class_names):
        raise DataError(
            f"the evaluation set's classes {list(data_classes)} differ from class_names {list(class_names)}"
        )
    labels, probabilities = predict_labelled(model, data)
    return evaluate_predictions(labels, probabilities, class_names)
