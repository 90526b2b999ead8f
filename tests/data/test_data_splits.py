"""Deterministic stratified splits and the content hash (the artifact: test_data_records.py)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ingot.data.dataset import LabelledImages
from ingot.data.sources import load_image_folder
from ingot.data.splits import split_dataset
from ingot.errors import DataError


@pytest.fixture
def folder_data(write_folder):
    root = write_folder({"a": 10, "b": 20, "c": 10})
    data, _ = load_image_folder(root)
    return data


def _membership(splits) -> dict[str, list[str]]:
    return {name: sorted(part.paths) for name, part in splits.items()}


def _shuffled(data: LabelledImages, seed: int) -> LabelledImages:
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    return data.subset(order)


def test_same_seed_same_split_whatever_the_listing_order(folder_data):
    first = split_dataset(folder_data, validation_fraction=0.2, test_fraction=0.2, seed=42)
    for shuffle_seed in (1, 2):
        # Also drop the cached digests, so hashes are recomputed from the files.
        reordered = _shuffled(folder_data, shuffle_seed)
        reordered.sha256 = None
        again = split_dataset(reordered, validation_fraction=0.2, test_fraction=0.2, seed=42)
        assert _membership(again) == _membership(first)
        assert again.content_hash == first.content_hash
    other = split_dataset(folder_data, validation_fraction=0.2, test_fraction=0.2, seed=43)
    assert _membership(other) != _membership(first)
    assert other.content_hash != first.content_hash


def test_split_is_stratified_disjoint_and_complete(folder_data):
    splits = split_dataset(folder_data, validation_fraction=0.2, test_fraction=0.2, seed=0)
    assert splits.class_names == ["a", "b", "c"]
    assert splits.test.class_counts() == {"a": 2, "b": 4, "c": 2}
    assert splits.validation.class_counts() == {"a": 2, "b": 4, "c": 2}
    assert splits.train.class_counts() == {"a": 6, "b": 12, "c": 6}
    membership = _membership(splits)
    everything = membership["train"] + membership["validation"] + membership["test"]
    assert sorted(everything) == sorted(folder_data.paths)
    for part in (splits.train, splits.validation, splits.test):
        for path, label in zip(part.paths, part.labels):
            assert path.split("/")[-2] == splits.class_names[label]
    summary = json.loads(json.dumps(splits.summary()))
    assert summary["splits"]["test"]["total"] == 8


def test_zero_test_fraction_gives_an_empty_test_split(folder_data):
    splits = split_dataset(folder_data, validation_fraction=0.25, test_fraction=0.0, seed=0)
    assert len(splits.test) == 0 and len(splits.validation) == 10 and len(splits.train) == 30


def test_impossible_splits_are_clear_errors(folder_data, write_folder, tmp_path):
    with pytest.raises(DataError, match="nothing to train on"):
        split_dataset(folder_data, validation_fraction=0.5, test_fraction=0.5, seed=0)
    with pytest.raises(DataError, match="test_fraction=1.5 is out of range"):
        split_dataset(folder_data, validation_fraction=0.1, test_fraction=1.5, seed=0)
    tiny, _ = load_image_folder(write_folder({"x": 1, "y": 5}, root=tmp_path / "tiny"),
                                min_images_per_class=1)
    with pytest.raises(DataError, match=r"stratified test split .* class counts \{'x': 1, 'y': 5\}"):
        split_dataset(tiny, validation_fraction=0.2, test_fraction=0.3, seed=0)


def test_content_hash_changes_when_a_file_or_a_label_changes(write_folder, encode_image, random_pixels):
    root = write_folder({"a": 6, "b": 6})

    def split_hash() -> str:
        data, _ = load_image_folder(root)
        return split_dataset(data, validation_fraction=0.2, test_fraction=0.2, seed=5).content_hash

    original = split_hash()
    assert split_hash() == original
    victim = sorted((root / "a").iterdir())[0]
    saved = victim.read_bytes()
    victim.write_bytes(encode_image(random_pixels(1234, (8, 8, 3)), "PNG"))
    assert split_hash() != original
    victim.write_bytes(saved)
    assert split_hash() == original
    victim.rename(root / "b" / "moved.png")  # the same bytes, now labelled b
    assert split_hash() != original


def test_array_split_hash_tracks_pixels_and_labels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 4, 4, 3), dtype=np.uint8)
    data = LabelledImages(class_names=["a", "b", "c"], labels=np.arange(30) % 3, images=images)
    base = split_dataset(data, validation_fraction=0.2, test_fraction=0.2, seed=1)
    assert split_dataset(_shuffled(data, 3), validation_fraction=0.2, test_fraction=0.2, seed=1).content_hash == base.content_hash
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    pixels = LabelledImages(class_names=data.class_names, labels=data.labels, images=changed)
    assert split_dataset(pixels, validation_fraction=0.2, test_fraction=0.2, seed=1).content_hash != base.content_hash
    relabelled = LabelledImages(class_names=["a", "b", "z"], labels=data.labels, images=images)
    assert split_dataset(relabelled, validation_fraction=0.2, test_fraction=0.2, seed=1).content_hash != base.content_hash
