"""A tiny CNN on scikit-learn's bundled digits (16x16 RGB uint8), trained in a few seconds, for the
int8 tests: the float model, its test rows and an Int8Plan over them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.monitor.digits_model import CLASS_NAMES, digit_images

SIZE = (16, 16)


@dataclass
class Digits:
    model: Any
    train_images: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    float_probabilities: np.ndarray


def digits_cnn(seed: int = 0) -> Any:
    """Input float32 0..255, Rescaling inside, two convolutions, softmax float32."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(*SIZE, 3), dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    outputs = keras.layers.Dense(len(CLASS_NAMES), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def train_digits(epochs: int = 15) -> Digits:
    import keras

    images, labels = digit_images()
    train, test = slice(0, 1200), slice(1200, None)
    model = digits_cnn()
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy")
    model.fit(images[train].astype(np.float32), labels[train], epochs=epochs, batch_size=32, verbose=0)
    probabilities = np.asarray(model.predict(images[test].astype(np.float32), batch_size=256, verbose=0))
    return Digits(model, images[train], images[test], labels[test], probabilities)


def plan(digits: Digits, **kw: Any) -> Any:
    from ingot.export.tflite import Int8Plan

    kw.setdefault("calibration_images", digits.train_images)
    return Int8Plan(test_images=digits.test_images, test_labels=digits.test_labels,
                    float_probabilities=digits.float_probabilities, **kw)


def card() -> dict:
    return {
        "name": "digits", "architecture": "digits_cnn", "training_config": {"epochs": 15},
        "data_hash": "sha256:" + "ef" * 32,
        "metrics": {"accuracy": 1.0, "per_class": {c: {"f1": 1.0} for c in CLASS_NAMES}},
        "drift_baseline": {},
    }


def export(digits: Digits, directory: Any, **plan_kw: Any) -> Any:
    from ingot.export.saved_model import export_saved_model

    return export_saved_model(digits.model, directory, class_names=CLASS_NAMES, image_size=SIZE, model_card=card(),
                              warmup_batch_sizes=(1, 4), int8=plan(digits, **plan_kw))
