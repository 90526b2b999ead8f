"""Evaluation numbers against hand-computed cases and scikit-learn, ECE, and the drift baseline of a model."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from ingot.errors import ConfigError, DataError, ModelError
from ingot.evaluate.metrics import (
    EvaluationReport,
    evaluate_model,
    evaluate_predictions,
    expected_calibration_error,
)

CLASSES = ["red", "green", "blue"]


def one_hot_probabilities(predicted, num_classes=3, confidence=0.8):
    """Rows whose argmax is `predicted`, with `confidence` on it and the rest spread evenly."""
    rest = (1.0 - confidence) / (num_classes - 1)
    probs = np.full((len(predicted), num_classes), rest)
    probs[np.arange(len(predicted)), predicted] = confidence
    return probs


def test_hand_computed_three_class_case():
    labels = [0, 0, 1, 1, 2, 2]
    predicted = [0, 1, 1, 1, 2, 0]
    report = evaluate_predictions(labels, one_hot_probabilities(predicted), CLASSES)

    assert report.accuracy == pytest.approx(4 / 6)
    # red: predicted at 0 and 5, one right -> P 1/2; one of two reds found -> R 1/2; F1 1/2.
    assert report.per_class["red"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    # green: predicted at 1, 2, 3, two right -> P 2/3, R 1, F1 = 2*(2/3)/(5/3) = 0.8.
    assert report.per_class["green"]["precision"] == pytest.approx(2 / 3)
    assert report.per_class["green"]["f1"] == pytest.approx(0.8)
    # blue: predicted once, right -> P 1, R 1/2, F1 2/3.
    assert report.per_class["blue"]["f1"] == pytest.approx(2 / 3)
    assert report.macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert report.confusion_matrix == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report.num_examples == 6
    assert report.mean_confidence == pytest.approx(0.8)
    # All confidences 0.8 with accuracy 4/6 in one bin: ECE = |4/6 - 0.8|.
    assert report.ece == pytest.approx(abs(4 / 6 - 0.8))


def test_matches_scikit_learn_on_a_random_case():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, size=200)
    logits = rng.normal(size=(200, 4)) + 2.0 * np.eye(4)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = ["a", "b", "c", "d"]
    report = evaluate_predictions(labels, probs, names)
    predicted = probs.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(labels, predicted, zero_division=0)
    assert report.accuracy == pytest.approx(accuracy_score(labels, predicted))
    assert report.macro_f1 == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert report.weighted_f1 == pytest.approx(f1_score(labels, predicted, average="weighted"))
    assert [report.per_class[n]["recall"] for n in names] == pytest.approx(list(r))
    assert [report.per_class[n]["support"] for n in names] == list(s)
    assert report.confusion_matrix == confusion_matrix(labels, predicted).tolist()


def test_never_predicted_class_has_f1_zero_without_warnings():
    labels = [0, 1, 2, 2]
    predicted = [0, 1, 1, 0]  # "blue" is never predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = evaluate_predictions(labels, one_hot_probabilities(predicted), CLASSES)
    assert report.per_class["blue"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}


def test_absent_class_is_still_reported():
    report = evaluate_predictions([0, 0, 1], one_hot_probabilities([0, 0, 1]), CLASSES)
    assert set(report.per_class) == set(CLASSES)
    assert report.per_class["blue"]["support"] == 0
    assert len(report.confusion_matrix) == 3


def test_ece_is_zero_when_perfectly_calibrated():
    # 10 predictions at 0.8 confidence, 8 right; 10 at 0.3, 3 right.
    confidences = [0.8] * 10 + [0.3] * 10
    correct = [True] * 8 + [False] * 2 + [True] * 3 + [False] * 7
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_an_overconfident_model():
    confidences = [0.99] * 10
    correct = [True, False] * 5
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.49)


def test_ece_weights_bins_by_size():
    # Bin 13 (0.9): accuracy 3/4 vs 0.9; bin 8 (0.6): accuracy 1 vs 0.6.
    confidences = [0.9] * 4 + [0.6] * 4
    correct = [True, True, True, False] + [True] * 4
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.5 * 0.15 + 0.5 * 0.4)


def test_ece_uses_fifteen_equal_width_bins():
    # 0.34 and 0.39 share the bin (1/3, 2/5]; 0.41 lies in the next one.
    same_bin = expected_calibration_error([0.34, 0.39], [True, False])
    assert same_bin == pytest.approx(abs(0.5 - 0.365))
    split = expected_calibration_error([0.39, 0.41], [True, False])
    assert split == pytest.approx(0.5 * (1 - 0.39) + 0.5 * 0.41)
    assert expected_calibration_error([1.0, 0.0], [True, False]) == pytest.approx(0.0)


def test_logits_instead_of_probabilities_are_refused():
    with pytest.raises(ModelError, match="softmax"):
        evaluate_predictions([0, 1], np.array([[2.0, -1.0, 0.5], [0.1, 3.0, 0.0]]), CLASSES)


def test_wrong_number_of_class_names_is_refused():
    with pytest.raises(ModelError, match=r"expected \[batch, 2\]"):
        evaluate_predictions([0, 1], one_hot_probabilities([0, 1]), ["a", "b"])


def test_labels_out_of_range_are_refused():
    with pytest.raises(DataError, match="class indices"):
        evaluate_predictions([0, 3], one_hot_probabilities([0, 1]), CLASSES)


def test_report_round_trips_through_json():
    report = evaluate_predictions([0, 0, 1, 2], one_hot_probabilities([0, 1, 1, 2]), CLASSES)
    restored = EvaluationReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert restored == report


def test_report_from_dict_names_missing_keys():
    with pytest.raises(ConfigError, match="macro_f1"):
        EvaluationReport.from_dict({"accuracy": 0.9, "class_names": ["a"]})


def test_per_class_table_is_fixed_width_and_readable():
    names = ["cat", "a-very-long-class-name", "dog"]
    report = evaluate_predictions([0, 1, 2, 2], one_hot_probabilities([0, 1, 2, 0]), names)
    table = report.per_class_table()
    lines = table.splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "f1", "support"]
    rows = [line for line in lines if line.split()[0] in names]
    assert [row.split()[0] for row in rows] == names
    assert len({len(row) for row in rows + [lines[0]]}) == 1  # columns line up
    assert rows[2].split() == ["dog", "1.000", "0.500", "0.667", "2"]
    assert any(line.startswith("accuracy") and "0.750" in line for line in lines)


# --- with a real Keras model --------------------------------------------------------------


def colour_model():
    """Classifies by dominant colour channel: images -> per-channel mean -> scaled softmax.
    Fixed weights, so predictions are known without training."""
    import keras

    inputs = keras.Input(shape=(8, 8, 3), dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(3, activation="softmax", name="probabilities")
    outputs = dense(x)
    model = keras.Model(inputs, outputs)
    dense.set_weights([np.eye(3, dtype="float32") * 10.0, np.zeros(3, dtype="float32")])
    return model


def colour_images(labels):
    images = np.full((len(labels), 8, 8, 3), 20, dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, :, :, label] = 230
    return images


def test_evaluate_model_on_a_tf_dataset():
    import tensorflow as tf

    labels = np.array([0, 1, 2, 0, 1, 2, 2], dtype=np.int64)
    images = colour_images([0, 1, 2, 0, 2, 2, 1])  # two mislabelled
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(3)
    model = colour_model()
    report = evaluate_model(model, dataset, CLASSES)
    assert report.accuracy == pytest.approx(5 / 7)
    assert report.confusion_matrix == [[2, 0, 0], [0, 1, 1], [0, 1, 2]]
    expected = evaluate_predictions(labels, model.predict(images.astype("float32"), verbose=0), CLASSES)
    assert report.macro_f1 == pytest.approx(expected.macro_f1)
    assert report.ece == pytest.approx(expected.ece, abs=1e-6)


def test_evaluate_model_refuses_an_empty_dataset():
    import tensorflow as tf

    empty = tf.data.Dataset.from_tensor_slices(
        (np.zeros((0, 8, 8, 3), np.uint8), np.zeros((0,), np.int64))
    ).batch(4)
    with pytest.raises(DataError, match="empty"):
        evaluate_model(colour_model(), empty, CLASSES)


def test_drift_baseline_of_a_model():
    """What the evaluate step does: predict the validation split once, build its drift baseline."""
    import tensorflow as tf

    from ingot.evaluate.drift import DriftBaseline
    from ingot.evaluate.metrics import predict_labelled

    labels = np.array([0, 1, 2, 2], dtype=np.int64)
    images = colour_images(labels)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    seen, probabilities = predict_labelled(colour_model(), dataset)
    baseline = DriftBaseline.compute(probabilities, seen, CLASSES, images)
    assert len(baseline.confidence.edges) == 101
    assert sum(baseline.confidence.counts) == 4 == sum(baseline.input_mean.counts)
    assert baseline.predicted_class_counts == (1, 1, 2) and baseline.accuracy == 1.0
    assert sum(baseline.confidence.counts[90:]) == 4  # 10 * (230-20)/255 logit margin: confidence > 0.9


def test_evaluate_model_on_labelled_images_and_arrays():
    from ingot.data.dataset import LabelledImages

    labels = np.array([0, 1, 2, 1], dtype=np.int64)
    images = colour_images(labels)
    model = colour_model()
    from_split = evaluate_model(model, LabelledImages(class_names=CLASSES, labels=labels, images=images), CLASSES)
    from_arrays = evaluate_model(model, (images, labels), CLASSES)
    assert from_split.accuracy == from_arrays.accuracy == 1.0
    assert from_split.confusion_matrix == from_arrays.confusion_matrix == [[1, 0, 0], [0, 2, 0], [0, 0, 1]]
    with pytest.raises(DataError, match="differ from class_names"):
        evaluate_model(model, LabelledImages(class_names=["r", "g", "b"], labels=labels, images=images), CLASSES)
