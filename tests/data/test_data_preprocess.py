"""decode_and_resize is shared by training and serving; these pin its pixel semantics."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ingot.data.preprocess import AugmentationConfig, decode_and_resize
from ingot.errors import ConfigError


def _encode(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _pixels(seed: int, shape=(12, 10, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_lossless_bytes_match_the_array_exactly_without_resize(fmt):
    import tensorflow as tf

    array = _pixels(1)
    out = decode_and_resize(tf.constant(_encode(array, fmt)), (12, 10))
    assert out.dtype == tf.uint8
    np.testing.assert_array_equal(out.numpy(), array)


def test_resize_matches_tf_resize_of_the_array_and_rounds():
    import tensorflow as tf

    array = _pixels(2, (20, 16, 3))
    out = decode_and_resize(tf.constant(_encode(array, "PNG")), (8, 8)).numpy()
    expected = tf.image.resize(array, (8, 8), method="bilinear", antialias=True).numpy()
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.clip(np.round(expected), 0, 255).astype(np.uint8))


def test_grayscale_becomes_three_equal_channels():
    import tensorflow as tf

    gray = _pixels(3, (6, 6))
    out = decode_and_resize(tf.constant(_encode(gray, "PNG")), (6, 6)).numpy()
    assert out.shape == (6, 6, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray)


def test_rgba_drops_alpha_and_gif_gives_one_frame():
    import tensorflow as tf

    rgba = _pixels(4, (5, 7, 4))
    out = decode_and_resize(tf.constant(_encode(rgba, "PNG")), (5, 7)).numpy()
    np.testing.assert_array_equal(out, rgba[..., :3])

    frames = [Image.fromarray(_pixels(s, (5, 7, 3))).convert("P") for s in (5, 6)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    out = decode_and_resize(tf.constant(buffer.getvalue()), (5, 7)).numpy()
    np.testing.assert_array_equal(out, np.asarray(frames[0].convert("RGB")))


def test_jpeg_decodes_close_to_its_source():
    import tensorflow as tf

    array = np.full((16, 16, 3), 120, dtype=np.uint8)
    array[:8] = 200
    out = decode_and_resize(tf.constant(_encode(array, "JPEG")), (16, 16)).numpy()
    assert np.abs(out.astype(int) - array.astype(int)).mean() < 4


def test_undecodable_bytes_raise_in_tensorflow():
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_and_resize(tf.constant(b"not an image"), (4, 4))


def test_augmentation_config_defaults_off_and_validates():
    assert not AugmentationConfig().enabled
    assert AugmentationConfig(flip="horizontal").enabled
    with pytest.raises(ConfigError, match="flip"):
        AugmentationConfig(flip="sideways")
    with pytest.raises(ConfigError, match="rotation"):
        AugmentationConfig(rotation=2.0)
    with pytest.raises(ConfigError, match="valid keys"):
        AugmentationConfig.from_dict({"shear": 0.1})
    assert AugmentationConfig.from_dict({"zoom": 0.1}).to_dict() == {
        "flip": "none", "rotation": 0.0, "zoom": 0.1}
