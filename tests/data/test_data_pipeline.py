"""make_tf_dataset: shapes and dtypes, deterministic evaluation, training-only augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from ingot.data.dataset import LabelledImages
from ingot.data.pipeline import make_tf_dataset
from ingot.data.preprocess import AugmentationConfig
from ingot.errors import ConfigError, DataError


def _array_data(count: int = 12, size: tuple[int, int] = (8, 8)) -> LabelledImages:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, *size, 3), dtype=np.uint8)
    return LabelledImages(class_names=["a", "b", "c"], labels=np.arange(count) % 3, images=images)


def _files_data(write_folder) -> LabelledImages:
    root = write_folder({"a": 3, "b": 3, "c": 2})
    paths = sorted(str(p) for p in root.glob("*/*.png"))
    labels = ["abc".index(p.split("/")[-2]) for p in paths]
    return LabelledImages(class_names=["a", "b", "c"], labels=labels, paths=paths)


def _epoch(dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("training", [False, True])
def test_file_pipeline_shapes_and_dtypes(write_folder, training):
    data = _files_data(write_folder)
    dataset = make_tf_dataset(data, image_size=(16, 12), batch_size=3, training=training, seed=1)
    batches = list(dataset)
    assert [len(y) for _, y in batches] == [3, 3, 2]
    images, labels = batches[0]
    assert images.dtype.name == "float32" and tuple(images.shape) == (3, 16, 12, 3)
    assert labels.dtype.name == "int64"
    _, all_labels = _epoch(dataset)
    assert sorted(all_labels.tolist()) == sorted(data.labels.tolist())


def test_array_pipeline_resizes_when_sizes_differ_and_keeps_pixels_otherwise():
    data = _array_data()
    same = make_tf_dataset(data, image_size=(8, 8), batch_size=5, training=False)
    images, labels = _epoch(same)
    np.testing.assert_array_equal(images, data.images.astype(np.float32))
    np.testing.assert_array_equal(labels, data.labels)
    bigger, _ = _epoch(make_tf_dataset(data, image_size=(12, 10), batch_size=5, training=False))
    assert bigger.shape == (12, 12, 10, 3)
    assert np.array_equal(bigger, np.round(bigger)) and bigger.min() >= 0 and bigger.max() <= 255


def test_file_pixels_equal_array_pixels(write_folder):
    """The file path and the array path feed the model the same values for the same image."""
    from PIL import Image

    data = _files_data(write_folder)
    from_files, _ = _epoch(make_tf_dataset(data, image_size=(8, 8), batch_size=4, training=False))
    arrays = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in data.paths])
    np.testing.assert_array_equal(from_files, arrays.astype(np.float32))


def test_evaluation_pipeline_is_deterministic_across_iterations(write_folder):
    data = _files_data(write_folder)
    dataset = make_tf_dataset(
        data, image_size=(8, 8), batch_size=3, training=False,
        augmentation=AugmentationConfig(flip="horizontal", rotation=0.2, zoom=0.2),
    )
    first, second = _epoch(dataset), _epoch(dataset)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], data.labels)
    np.testing.assert_array_equal(second[1], data.labels)


def test_training_shuffles_from_the_seed_and_reshuffles_each_epoch():
    data = _array_data(count=30)
    one = make_tf_dataset(data, image_size=(8, 8), batch_size=30, training=True, seed=7)
    again = make_tf_dataset(data, image_size=(8, 8), batch_size=30, training=True, seed=7)
    epoch1, epoch2 = _epoch(one)[1], _epoch(one)[1]
    assert not np.array_equal(epoch1, data.labels)
    assert not np.array_equal(epoch1, epoch2)
    np.testing.assert_array_equal(epoch1, _epoch(again)[1])


def test_augmentation_changes_training_images_only_when_on():
    data = _array_data()
    plain = make_tf_dataset(data, image_size=(8, 8), batch_size=12, training=True, seed=3)
    augmented = make_tf_dataset(
        data, image_size=(8, 8), batch_size=12, training=True, seed=3,
        augmentation=AugmentationConfig(flip="horizontal_and_vertical", rotation=0.25, zoom=0.3),
    )
    off = make_tf_dataset(
        data, image_size=(8, 8), batch_size=12, training=True, seed=3,
        augmentation=AugmentationConfig(),
    )
    plain_images, plain_labels = _epoch(plain)
    aug_images, aug_labels = _epoch(augmented)
    off_images, _ = _epoch(off)
    np.testing.assert_array_equal(plain_labels, aug_labels)  # same shuffle, same seed
    np.testing.assert_array_equal(np.sort(plain_images.reshape(12, -1), axis=0),
                                  np.sort(data.images.reshape(12, -1).astype(np.float32), axis=0))
    np.testing.assert_array_equal(off_images, plain_images)
    assert not np.allclose(aug_images, plain_images)
    assert aug_images.dtype == np.float32 and aug_images.min() >= 0.0 and aug_images.max() <= 255.0


def test_bad_arguments_are_clear_errors():
    data = _array_data()
    with pytest.raises(ConfigError, match="batch_size"):
        make_tf_dataset(data, image_size=(8, 8), batch_size=0, training=False)
    with pytest.raises(DataError, match="empty"):
        make_tf_dataset(data.subset([]), image_size=(8, 8), batch_size=2, training=False)


def test_every_format_in_a_scanned_folder_flows_through_the_pipeline(mixed_folder):
    from ingot.data.sources import load_image_folder

    data, _ = load_image_folder(mixed_folder, min_images_per_class=2)
    images, labels = _epoch(make_tf_dataset(
        data, image_size=(8, 8), batch_size=5, training=True, seed=0,
        augmentation={"flip": "horizontal", "zoom": 0.1},
    ))
    assert images.shape == (12, 8, 8, 3) and sorted(labels.tolist()) == sorted(data.labels.tolist())
    assert images.min() >= 0.0 and images.max() <= 255.0
    with pytest.raises(ConfigError, match="shear"):
        make_tf_dataset(data, image_size=(8, 8), batch_size=5, training=True, augmentation={"shear": 1})
