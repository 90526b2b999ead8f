"""A real (tiny) Keras classifier of scikit-learn's bundled digits, as 16x16 RGB uint8 images
(dark background, bright strokes), for end-to-end drift checks: trains in a few seconds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ingot.evaluate.drift import DriftBaseline

CLASS_NAMES = [str(d) for d in range(10)]


@dataclass
class DigitsModel:
    model: Any
    baseline: DriftBaseline
    live_images: np.ndarray  # held-out images never used for training or the baseline
    live_labels: np.ndarray

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted class ids, top-1 confidences) of uint8 images."""
        probabilities = np.asarray(self.model.predict(images.astype(np.float32), batch_size=256, verbose=0))
        return probabilities.argmax(axis=1), probabilities.max(axis=1)


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.kron(digits.images, np.ones((2, 2))) * (255.0 / 16.0)        # 8x8 -> 16x16, 0..255
    images = np.repeat(pixels[..., np.newaxis], 3, axis=-1).round().astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    return images[order], digits.target[order].astype(np.int64)


def train_digits_model(epochs: int = 12) -> DigitsModel:
    import keras
    import tensorflow as tf

    from ingot.retrain.steps import predict_validation

    keras.utils.set_random_seed(0)
    images, labels = digit_images()
    train, validation, live = slice(0, 900), slice(900, 1300), slice(1300, None)
    model = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images[train].astype(np.float32), labels[train], epochs=epochs, batch_size=32, verbose=0)
    validation_data = tf.data.Dataset.from_tensor_slices(
        (images[validation].astype(np.float32), labels[validation])).batch(64)
    seen = predict_validation(model, validation_data)  # what the evaluate step does
    baseline = DriftBaseline.compute(seen.probabilities, seen.labels, CLASS_NAMES, seen.images)
    return DigitsModel(model, baseline, images[live], labels[live])
