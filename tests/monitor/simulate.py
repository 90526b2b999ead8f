"""A simulated classifier and its traffic: validation-like windows and shifted ones, made from
seeded numpy draws so the statistical tests can be checked many times over in milliseconds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingot.evaluate.drift import DriftBaseline, input_statistics
from ingot.monitor.statistics import Window

NUM_CLASSES = 5
CLASS_NAMES = [f"c{i}" for i in range(NUM_CLASSES)]
IMAGE_SHAPE = (8, 8, 3)


@dataclass
class Batch:
    labels: np.ndarray
    probabilities: np.ndarray
    images: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1)

    def window(self, *, labelled: bool = False) -> Window:
        means, stds = input_statistics(self.images)
        return Window.from_values(
            self.predicted, self.confidence, NUM_CLASSES, input_means=means, input_stds=stds,
            correct=(self.predicted == self.labels) if labelled else None,
        )


def draw(n: int, rng: np.random.Generator, *, prior=None, sharpness: float = 4.0, darken: float = 1.0,
         invert: bool = False) -> Batch:
    """n images of classes drawn from `prior`; the model is right about 85% of the time with
    `sharpness` 4 (lower sharpness: flatter, less confident, less accurate predictions)."""
    prior = np.full(NUM_CLASSES, 1 / NUM_CLASSES) if prior is None else np.asarray(prior)
    labels = rng.choice(NUM_CLASSES, size=n, p=prior)
    logits = rng.normal(0.0, 1.0, size=(n, NUM_CLASSES))
    logits[np.arange(n), labels] += sharpness * rng.uniform(0.3, 1.0, size=n)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    brightness = rng.uniform(40, 140, size=(n, 1, 1, 1))  # darker than mid-grey: inverting shows
    images = np.clip(rng.normal(brightness, 40, size=(n, *IMAGE_SHAPE)), 0, 255)
    images = (images * darken).astype(np.uint8)
    if invert:
        images = 255 - images
    return Batch(labels, probabilities, images)


def baseline(seed: int = 0, n: int = 2000) -> DriftBaseline:
    batch = draw(n, np.random.default_rng(seed))
    return DriftBaseline.compute(batch.probabilities, batch.labels, CLASS_NAMES, batch.images)
