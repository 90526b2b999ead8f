"""The one decode-and-resize step shared by training and the exported `serving_bytes` signature.

Training and serving call the same function so they can never disagree on how bytes become
pixels (channel handling, interpolation, rounding). TensorFlow is imported inside functions so
that importing `ingot.data` stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ingot.errors import ConfigError

FLIP_MODES = ("none", "horizontal", "vertical", "horizontal_and_vertical")


def decode_and_resize(image_bytes: Any, image_size: Sequence[int]) -> Any:
    """Decode JPEG/PNG/GIF/BMP bytes (a tf.string scalar) to uint8 [H, W, 3] at `image_size`.

    Grayscale and RGBA/palette images become RGB; an animated GIF contributes its first frame.
    Bilinear with antialias so downscaling large photos does not alias. When the image already
    has the target size it is passed through untouched, so an array and its PNG encoding give
    identical pixels.
    """
    import tensorflow as tf

    height, width = int(image_size[0]), int(image_size[1])
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    shape = tf.shape(image)
    same_size = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))

    out = tf.cond(same_size, lambda: image, lambda: resize_uint8(image, (height, width)))
    out.set_shape([height, width, 3])
    return out


def resize_uint8(images: Any, image_size: Sequence[int]) -> Any:
    """Resize uint8 images ([H,W,C] or [B,H,W,C]) exactly as decode_and_resize does."""
    import tensorflow as tf

    scaled = tf.image.resize(images, tuple(int(s) for s in image_size), method="bilinear", antialias=True)
    return tf.saturate_cast(tf.round(scaled), tf.uint8)


@dataclass(frozen=True)
class AugmentationConfig:
    """Training-only augmentation; every transform is off by default.

    `rotation` is a fraction of a full turn (Keras RandomRotation's factor), `zoom` a fraction of
    the image size (Keras RandomZoom's height factor, width follows).
    """

    flip: str = "none"
    rotation: float = 0.0
    zoom: float = 0.0

    def __post_init__(self) -> None:
        if self.flip not in FLIP_MODES:
            raise ConfigError(
                f"augmentation.flip={self.flip!r} is not valid; expected one of {', '.join(FLIP_MODES)}"
            )
        if not 0.0 <= float(self.rotation) <= 1.0:
            raise ConfigError(
                f"augmentation.rotation={self.rotation} is out of range; expected a fraction of a "
                "full turn between 0 and 1"
            )
        if not 0.0 <= float(self.zoom) < 1.0:
            raise ConfigError(
                f"augmentation.zoom={self.zoom} is out of range; expected a fraction between 0 and 1"
            )

    @property
    def enabled(self) -> bool:
        return self.flip != "none" or self.rotation > 0 or self.zoom > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> AugmentationConfig:
        """Build from a config mapping; unknown keys are a ConfigError naming the valid ones."""
        values = dict(values or {})
        valid = {"flip", "rotation", "zoom"}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ConfigError(
                f"unknown augmentation key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(valid))}"
            )
        return cls(**values)
