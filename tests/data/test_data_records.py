"""The Dataset artifact: TFRecord shards plus manifest round-trip the images, labels and content
hash; shards close at the configured size; a corrupt, missing or edited part is named; the
tf.data pipeline over the shards decodes exactly as the in-memory pipeline does."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ingot.data.dataset import LabelledImages
from ingot.data.records import (
    MANIFEST_NAME,
    decoded_arrays,
    open_dataset_artifact,
    write_dataset_artifact,
)
from ingot.data.sources import load_image_folder
from ingot.data.splits import split_dataset
from ingot.errors import DataError


@pytest.fixture
def folder_splits(write_folder):
    root = write_folder({"a": 10, "b": 20, "c": 10})
    data, _ = load_image_folder(root)
    return split_dataset(data, validation_fraction=0.2, test_fraction=0.2, seed=9)


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_file_splits_round_trip_bytes_labels_and_hash(folder_splits, tmp_path):
    artifact = write_dataset_artifact(folder_splits, str(tmp_path / "ds"), report={"total": 40})
    reopened = open_dataset_artifact(str(tmp_path / "ds"))
    assert reopened.content_hash == folder_splits.content_hash == artifact.content_hash
    assert reopened.recompute_content_hash() == folder_splits.content_hash
    assert reopened.class_names == ["a", "b", "c"] and reopened.seed == 9 and reopened.report == {"total": 40}
    for (name, original), (_, stored) in zip(folder_splits.items(), reopened.items()):
        assert len(stored) == len(original) and stored.class_counts() == original.class_counts(), name
        examples = list(stored.examples())
        # The bytes are the files' bytes as read (never re-encoded), with label and digest.
        assert [e[0] for e in examples] == [Path(p).read_bytes() for p in original.paths]
        assert [e[1] for e in examples] == [int(label) for label in original.labels]
        assert [e[2] for e in examples] == [_sha(p) for p in original.paths]
    manifest = json.loads((tmp_path / "ds" / MANIFEST_NAME).read_text())
    shard_paths = [shard["path"] for part in manifest["splits"].values() for shard in part["shards"]]
    assert shard_paths and all(path.split("/")[0] in ("train", "validation", "test") for path in shard_paths)
    text = (tmp_path / "ds" / MANIFEST_NAME).read_text()
    assert not any(p.rsplit("/", 1)[-1] in text for p in folder_splits.train.paths)  # no source file paths


def test_the_same_images_hash_the_same_wherever_they_live(folder_splits, tmp_path, write_folder):
    moved = write_folder({"a": 10, "b": 20, "c": 10}, root=tmp_path / "elsewhere")
    data, _ = load_image_folder(moved)
    again = split_dataset(data, validation_fraction=0.2, test_fraction=0.2, seed=9)
    first = write_dataset_artifact(folder_splits, str(tmp_path / "one"))
    second = write_dataset_artifact(again, str(tmp_path / "two"))
    assert first.content_hash == second.content_hash
    assert [s.sha256 for s in first.train.shards] == [s.sha256 for s in second.train.shards]


def test_array_sources_are_stored_losslessly(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8)
    data = LabelledImages(class_names=["x", "y"], labels=np.arange(20) % 2, images=images, source="cifar")
    splits = split_dataset(data, validation_fraction=0.2, test_fraction=0.2, seed=0)
    artifact = write_dataset_artifact(splits, str(tmp_path / "ds"))
    reopened = open_dataset_artifact(str(tmp_path / "ds"))
    assert reopened.source == "cifar" and reopened.content_hash == splits.content_hash == artifact.content_hash
    pixels, labels = decoded_arrays(reopened.test, (6, 6))
    np.testing.assert_array_equal(pixels, splits.test.images)
    np.testing.assert_array_equal(labels, splits.test.labels)


def test_shards_close_at_the_configured_size(folder_splits, tmp_path):
    sizes = [len(Path(path).read_bytes()) for path in folder_splits.train.paths]
    limit = 4 * max(sizes)
    artifact = write_dataset_artifact(folder_splits, str(tmp_path / "ds"), shard_bytes=limit)
    train = artifact.train
    assert len(train.shards) >= len(train) // 5 and sum(s.count for s in train.shards) == len(train)
    for shard in train.shards[:-1]:  # each closes once its records reach the limit, not before
        assert shard.size >= limit and shard.size < limit + max(sizes) + 200
    assert train.shards[-1].size < limit + max(sizes) + 200
    pixels, labels = decoded_arrays(train, (8, 8))  # shards interleaved: a fixed order, every record once
    again, labels_again = decoded_arrays(train, (8, 8))
    assert pixels.shape == (len(train), 8, 8, 3)
    np.testing.assert_array_equal(pixels, again)
    np.testing.assert_array_equal(labels, labels_again)
    assert sorted(labels.tolist()) == sorted(folder_splits.train.labels.tolist())


def test_a_corrupt_shard_is_named(folder_splits, tmp_path):
    write_dataset_artifact(folder_splits, str(tmp_path / "ds"), shard_bytes=1)
    shard = tmp_path / "ds" / "validation" / "validation-00002.tfrecord"
    content = bytearray(shard.read_bytes())
    content[len(content) // 2] ^= 0xFF
    shard.write_bytes(bytes(content))
    with pytest.raises(DataError, match=r"shard .*validation-00002\.tfrecord is corrupt"):
        open_dataset_artifact(str(tmp_path / "ds"))

    shard.unlink()
    with pytest.raises(DataError, match=r"shard .*validation-00002\.tfrecord is missing"):
        open_dataset_artifact(str(tmp_path / "ds"))


def test_an_edited_manifest_is_refused(folder_splits, tmp_path):
    write_dataset_artifact(folder_splits, str(tmp_path / "ds"))
    path = tmp_path / "ds" / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["class_names"] = ["a", "c", "b"]  # relabels every b as c: the hash names class names
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="does not match its content hash"):
        open_dataset_artifact(str(tmp_path / "ds"))
    manifest["format"] = "ingot.splits/v1"
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="expected 'ingot.dataset/v2'"):
        open_dataset_artifact(str(tmp_path / "ds"))


def test_a_rewrite_that_fails_midway_leaves_no_complete_looking_artifact(folder_splits, tmp_path):
    write_dataset_artifact(folder_splits, str(tmp_path / "ds"))
    Path(folder_splits.test.paths[0]).unlink()  # the source changes under a second ingest
    with pytest.raises(DataError, match="cannot read"):
        write_dataset_artifact(folder_splits, str(tmp_path / "ds"))
    with pytest.raises(DataError, match=f"no {MANIFEST_NAME}"):
        open_dataset_artifact(str(tmp_path / "ds"))


def test_a_folder_without_a_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=f"no {MANIFEST_NAME}; expected a Dataset artifact"):
        open_dataset_artifact(str(tmp_path))


def test_record_pipeline_feeds_the_same_pixels_as_the_file_pipeline(folder_splits, tmp_path):
    from ingot.data.pipeline import make_tf_dataset

    common = {"image_size": (12, 12), "batch_size": 4, "training": False}
    from_files = np.concatenate([x.numpy() for x, _ in make_tf_dataset(folder_splits.test, **common)])
    one_shard = write_dataset_artifact(folder_splits, str(tmp_path / "one"))
    artifact = write_dataset_artifact(folder_splits, str(tmp_path / "ds"), shard_bytes=200)
    shutil.rmtree(tmp_path / "images")  # the artifact alone is enough
    np.testing.assert_array_equal(  # one shard keeps the stored order: pixel for pixel the same
        np.concatenate([x.numpy() for x, _ in make_tf_dataset(one_shard.test, **common)]), from_files)
    from_records = [(x.numpy(), y.numpy()) for x, y in make_tf_dataset(artifact.test, **common)]
    again = [(x.numpy(), y.numpy()) for x, y in make_tf_dataset(artifact.test, **common)]
    assert len(from_records) == -(-len(artifact.test) // 4)
    for (x1, y1), (x2, y2) in zip(from_records, again):  # deterministic evaluation order
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    labels = np.concatenate([y for _, y in from_records])
    assert sorted(labels.tolist()) == sorted(folder_splits.test.labels.tolist())
    assert from_records[0][0].dtype == np.float32

    training = make_tf_dataset(artifact.train, training=True, image_size=(12, 12), batch_size=4, seed=3)
    seen = np.concatenate([y.numpy() for _, y in training])
    assert sorted(seen.tolist()) == sorted(folder_splits.train.labels.tolist())
