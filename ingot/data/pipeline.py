"""The tf.data input pipeline for training, validation and test.

Images leave the pipeline as float32 in 0..255 in every mode: the model's input is float32 raw
pixels (normalization lives inside the model), and Keras augmentation layers produce floats, so
one dtype everywhere keeps training and evaluation feeding the model identically. Decoding and
resizing use `decode_and_resize`, the function the exported `serving_bytes` signature uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ingot.data.dataset import LabelledImages
from ingot.data.preprocess import AugmentationConfig, decode_and_resize, resize_uint8
from ingot.data.records import RecordSplit, decoded_records
from ingot.errors import ConfigError, DataError

# Shuffle buffer for Dataset artifact splits: the whole split up to this many images (decoded
# images at 224x224 take ~150 KB each, so this bounds the buffer near 7 GB on large datasets).
SHUFFLE_BUFFER = 50_000


def make_tf_dataset(
    data: LabelledImages | RecordSplit,
    *,
    image_size: Sequence[int],
    batch_size: int,
    training: bool,
    augmentation: AugmentationConfig | Mapping[str, Any] | None = None,
    seed: int = 0,
    cache: bool = True,
) -> Any:
    """A `tf.data.Dataset` of (float32 images [B,H,W,3] in 0..255, int64 labels [B]).

    `data` is a split of a Dataset artifact (TFRecord shards, what the pipeline's steps pass) or
    in-memory `LabelledImages` (files or arrays, for tools and tests).

    Training: shuffled from `seed` (reshuffled every epoch; the order is reproducible) and
    augmented on whole batches when `augmentation` is enabled. Validation/test (`training=False`): same order and pixels on every iteration.
    Decoded images are cached in memory after the first epoch (`cache=False` to skip that for
    data larger than memory); the parallel decode keeps file order, so a seed reproduces a run.
    """
    import tensorflow as tf

    if len(data) == 0:
        raise DataError("cannot build an input pipeline from an empty split; expected at least one image")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size} is not valid; expected a positive integer")
    height, width = (int(s) for s in image_size)
    if height < 1 or width < 1:
        raise ConfigError(f"image_size={tuple(image_size)} is not valid; expected two positive integers")
    if isinstance(augmentation, Mapping):
        augmentation = AugmentationConfig.from_dict(dict(augmentation))
    autotune = tf.data.AUTOTUNE

    if isinstance(data, RecordSplit):
        # A Dataset artifact split: shards read in parallel, decoded as the serving signature does.
        dataset = decoded_records(data, (height, width))
        if cache:
            dataset = dataset.cache()
        resize_batches = False
    elif data.paths is not None:
        labels = data.labels.astype("int64")
        dataset = tf.data.Dataset.from_tensor_slices((list(data.paths), labels))

        def load(path: Any, label: Any) -> tuple[Any, Any]:
            return decode_and_resize(tf.io.read_file(path), (height, width)), label

        dataset = dataset.map(load, num_parallel_calls=autotune, deterministic=True)
        if cache:
            dataset = dataset.cache()
        resize_batches = False
    else:
        labels = data.labels.astype("int64")
        dataset = tf.data.Dataset.from_tensor_slices((data.images, labels))
        # Arrays are already in memory; resizing per batch avoids holding a resized copy.
        resize_batches = tuple(data.images.shape[1:3]) != (height, width)

    if training:
        buffer = min(len(data), SHUFFLE_BUFFER) if isinstance(data, RecordSplit) else len(data)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(int(batch_size))

    def to_float(images: Any, batch_labels: Any) -> tuple[Any, Any]:
        if resize_batches:
            images = resize_uint8(images, (height, width))
        return tf.cast(images, tf.float32), batch_labels

    dataset = dataset.map(to_float, num_parallel_calls=autotune, deterministic=True)

    if training and augmentation is not None and augmentation.enabled:
        augment = build_augmentation(augmentation, seed=seed)

        def apply(images: Any, batch_labels: Any) -> tuple[Any, Any]:
            return tf.clip_by_value(augment(images, training=True), 0.0, 255.0), batch_labels

        # Parallel: rotation and zoom are projective warps that would otherwise starve training.
        # Batch order stays fixed; which batch draws which random transform follows execution
        # order (Keras keeps its RNG state in a variable), so augmentation is seeded but not
        # bit-identical between runs.
        dataset = dataset.map(apply, num_parallel_calls=autotune, deterministic=True)

    return dataset.prefetch(autotune)


def build_augmentation(config: AugmentationConfig, *, seed: int = 0) -> Any:
    """Keras random layers for `config`, seeded, as one Sequential (identity when all off)."""
    import keras

    layers: list[Any] = []
    if config.flip != "none":
        layers.append(keras.layers.RandomFlip(config.flip, seed=seed, name="random_flip"))
    if config.rotation > 0:
        layers.append(
            keras.layers.RandomRotation(
                config.rotation, fill_mode="reflect", seed=seed + 1, name="random_rotation"
            )
        )
    if config.zoom > 0:
        layers.append(
            keras.layers.RandomZoom(
                (-config.zoom, config.zoom), fill_mode="reflect", seed=seed + 2, name="random_zoom"
            )
        )
    return keras.Sequential(layers, name="augmentation")
