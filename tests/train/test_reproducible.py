"""Reproducible training: the same data, config and seed give the same model; another seed does not."""

from __future__ import annotations

import numpy as np
import pytest

from ingot.data.dataset import LabelledImages
from ingot.data.splits import split_dataset
from ingot.train.config import TrainConfig
from ingot.train.trainer import train_model

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIZE = 24


@pytest.fixture(scope="module")
def splits():
    rng = np.random.default_rng(3)
    labels = np.arange(60) % 3
    images = np.array([40, 128, 215])[labels][:, None, None, None] + rng.integers(-35, 36, size=(60, SIZE, SIZE, 3))
    data = LabelledImages(class_names=["a", "b", "c"], labels=labels, images=images.clip(0, 255).astype(np.uint8))
    return split_dataset(data, validation_fraction=0.25, test_fraction=0.2, seed=0)


def _probabilities(splits, seed: int) -> np.ndarray:
    config = TrainConfig(image_size=(SIZE, SIZE), batch_size=8, epochs=2, verbose="lines", seed=seed,
                         augmentation={"flip": "horizontal", "rotation": 0.05, "zoom": 0.0})
    model = train_model(config, splits).model
    return np.asarray(model(splits.test.images.astype(np.float32), training=False))


def test_same_seed_same_predictions_other_seed_differs(splits):
    first, again, other = _probabilities(splits, 7), _probabilities(splits, 7), _probabilities(splits, 8)
    assert np.max(np.abs(first - again)) <= 1e-6
    assert np.max(np.abs(first - other)) > 1e-4


def test_determinism_is_a_recipe_setting_recorded_with_the_seed():
    config = TrainConfig().with_overrides(["seed=5", "deterministic=false"])
    assert config.to_dict()["seed"] == 5 and config.to_dict()["deterministic"] is False
    assert TrainConfig().deterministic is True
