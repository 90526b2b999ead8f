"""A tiny image folder and recipe for pipeline tests: trains in seconds on 2 CPU cores.

Three colour classes a small CNN learns in a few epochs, and two "twin" classes holding the very
same noise images, which no model can tell apart: their F1 stays far below any real floor, so a
high `min_class_f1` rejects deterministically while a floor of 0 blesses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = {"red": 0, "green": 1, "blue": 2}
TWINS = ("twin_a", "twin_b")
CLASSES = sorted([*COLOURS, *TWINS])
IMAGE_PX = 16  # files on disk
PER_CLASS = 12

# Model input 20x20 (the cnn needs at least 18x18); halves for validation/test keep 3 test images
# per class. Augmentation off: these are colour blobs, not objects.
RECIPE = {
    "architecture": "cnn",
    "image_size": [20, 20],
    "epochs": 3,
    "batch_size": 8,
    "learning_rate": 0.01,
    "validation_fraction": 0.25,
    "test_fraction": 0.25,
    "min_images_per_class": 4,
    "early_stopping_patience": 3,
    "seed": 7,
    "verbose": "lines",
    "augmentation": {"flip": "none", "rotation": 0.0, "zoom": 0.0},
}
BLESSING = {"min_accuracy": 0.0, "min_class_f1": 0.0, "max_regression": 1.0}
REJECTING = {"min_accuracy": 0.0, "min_class_f1": 0.95, "max_regression": 1.0}


def write_image_folder(root: Path, *, seed: int = 0) -> Path:
    """Write the tiny dataset as PNG files under `root/<class>/` and return `root`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, channel in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            pixels = rng.integers(20, 70, size=(IMAGE_PX, IMAGE_PX, 3))
            pixels[:, :, channel] += 150
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{name}-{i:02d}.png")
    noise = [rng.integers(0, 256, size=(IMAGE_PX, IMAGE_PX, 3)).astype(np.uint8) for _ in range(PER_CLASS)]
    for name in TWINS:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, pixels in enumerate(noise):
            Image.fromarray(pixels).save(folder / f"noise-{i:02d}.png")
    return root
