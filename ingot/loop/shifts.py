"""How live images differ from the held-out test split, stated exactly so the figures can be read.

`photo_like` is what new photos of the same digits look like: each image moved by up to
`max_shift_px` pixels in x and y, rotated by up to `max_rotation_deg` degrees, with Gaussian
pixel noise of standard deviation `noise_std` (on 0..255). `drifted` is a world that changed:
a share of the stream becomes inverted (white digit on black becomes black on white) or heavily
darkened (intensities scaled by `darken_factor`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PhotoShift:
    max_shift_px: float = 2.0
    max_rotation_deg: float = 10.0
    noise_std: float = 8.0

    def describe(self) -> str:
        return (f"random shifts of up to {self.max_shift_px:g} px, rotations of up to "
                f"{self.max_rotation_deg:g} degrees, Gaussian pixel noise with sigma {self.noise_std:g}/255")


@dataclass(frozen=True)
class Drift:
    share: float = 0.6           # of the stream that drifts
    inverted_share: float = 0.5  # of the drifted images: inverted; the rest darkened
    darken_factor: float = 0.25

    def describe(self) -> str:
        inverted = self.share * self.inverted_share
        return (f"{inverted:.0%} of images inverted and {self.share - inverted:.0%} darkened to "
                f"{self.darken_factor:.0%} brightness")


def photo_like(images: np.ndarray, rng: np.random.Generator, shift: PhotoShift = PhotoShift()) -> np.ndarray:
    """uint8 [N, H, W, C] -> uint8 [N, H, W, C], each image changed independently."""
    from scipy import ndimage

    out = np.empty_like(images)
    for i, image in enumerate(images.astype(np.float32)):
        angle = rng.uniform(-shift.max_rotation_deg, shift.max_rotation_deg)
        moved = ndimage.rotate(image, angle, axes=(0, 1), reshape=False, order=1, mode="nearest")
        dy, dx = rng.uniform(-shift.max_shift_px, shift.max_shift_px, size=2)
        moved = ndimage.shift(moved, (dy, dx, 0), order=1, mode="nearest")
        moved += rng.normal(0.0, shift.noise_std, size=moved.shape)
        out[i] = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    return out


def drifted(images: np.ndarray, rng: np.random.Generator, drift: Drift = Drift()) -> tuple[np.ndarray, np.ndarray]:
    """Apply the drift to a random share of the images; returns (images, which were changed)."""
    out = images.copy()
    changed = rng.random(len(images)) < drift.share
    inverted = changed & (rng.random(len(images)) < drift.inverted_share)
    darkened = changed & ~inverted
    out[inverted] = 255 - out[inverted]
    out[darkened] = np.clip(np.rint(out[darkened].astype(np.float32) * drift.darken_factor), 0, 255).astype(np.uint8)
    return out, changed
