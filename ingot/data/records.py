"""The self-contained Dataset artifact: each split as sharded TFRecord files plus one manifest.

On a cluster every pipeline step runs in its own pod, so the artifact carries the images
themselves (the encoded bytes exactly as read, never re-encoded), not paths that only existed in
the ingest pod. Layout, under any location `tf.io.gfile` reaches (a directory, gs://, s3://):

    dataset.json                     the manifest (written last: its presence means complete)
    train/train-00000.tfrecord       tf.train.Example{image: bytes, label: int64, sha256: bytes}
    validation/validation-00000.tfrecord
    test/test-00000.tfrecord

The manifest holds the class names, per-split counts, the content hash (the same
`compute_content_hash` over (split, image sha256, class name) that `split_dataset` computes, so
the same images always hash the same) and each shard's size and sha256, so a truncated or
corrupted shard is named before any training is spent on it. Shards close at `shard_bytes`
(TFX and the tf.data guide suggest 100-200 MB: large enough for sequential reads from object
storage, small enough for parallel interleaving and per-worker file sharding).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingot import storage
from ingot.data.dataset import LabelledImages
from ingot.data.splits import (
    SPLIT_NAMES,
    DatasetSplits,
    compute_content_hash,
    file_digests,
)
from ingot.errors import DataError

MANIFEST_NAME = "dataset.json"
ARTIFACT_FORMAT = "ingot.dataset/v2"
DEFAULT_SHARD_BYTES = 128 * 1024 * 1024
SHARD_SUFFIX = ".tfrecord"
FEATURE_IMAGE = "image"
FEATURE_LABEL = "label"
FEATURE_SHA256 = "sha256"


@dataclass
class Shard:
    path: str  # relative to the artifact directory, '/'-separated
    count: int
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "count": self.count, "size": self.size, "sha256": self.sha256}


@dataclass
class RecordSplit:
    """One split of a Dataset artifact: its shard files (full locations), sizes and class counts.

    Duck-types the parts of `LabelledImages` that training and evaluation need (`len`,
    `class_names`, `class_counts()`); `make_tf_dataset` reads it through TFRecordDataset."""

    name: str
    class_names: list[str]
    files: list[str]
    counts: dict[str, int]
    shards: list[Shard] = field(default_factory=list)

    def __len__(self) -> int:
        return int(sum(self.counts.values()))

    def class_counts(self) -> dict[str, int]:
        return {name: int(self.counts.get(name, 0)) for name in self.class_names}

    def examples(self) -> Iterator[tuple[bytes, int, str]]:
        """(encoded image bytes, label, source sha256) per record, in stored order."""
        import tensorflow as tf

        for location in self.files:
            try:
                for raw in tf.data.TFRecordDataset(location).as_numpy_iterator():
                    yield parse_example_numpy(raw, location)
            except tf.errors.OpError as err:
                raise DataError(f"shard {location} cannot be read ({_tf_message(err)}); re-run ingest") from err


@dataclass
class DatasetArtifact:
    """A Dataset artifact opened for reading; quacks like `DatasetSplits` for the trainer."""

    directory: str
    class_names: list[str]
    content_hash: str
    train: RecordSplit
    validation: RecordSplit
    test: RecordSplit
    source: str = ""
    seed: int | None = None
    report: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    # Splits beyond train/validation/test (a dataset version's `production_holdout`): in the content
    # hash and verified like the others, never read by training.
    extra: dict[str, RecordSplit] = field(default_factory=dict)

    def items(self) -> list[tuple[str, RecordSplit]]:
        return [(name, getattr(self, name)) for name in SPLIT_NAMES]

    def all_items(self) -> list[tuple[str, RecordSplit]]:
        return self.items() + sorted(self.extra.items())

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "seed": self.seed,
            "content_hash": self.content_hash,
            "class_names": list(self.class_names),
            "splits": {name: {"total": len(part), "class_counts": part.class_counts()} for name, part in self.items()},
        }

    def recompute_content_hash(self) -> str:
        """The content hash from the records themselves (reads every shard)."""
        return _records_content_hash(self)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def write_dataset_artifact(
    splits: DatasetSplits,
    directory: str,
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    report: dict[str, Any] | None = None,
) -> DatasetArtifact:
    """Write `splits` as TFRecord shards under `directory`, then the manifest; returns it opened.

    File sources contribute their bytes as read (checked against the scan's sha256, so a file
    edited between scan and ingest is refused); array sources (CIFAR-10) are stored as PNG,
    which is lossless, under their pixel digest."""
    import tensorflow as tf

    if int(shard_bytes) < 1:
        raise DataError(f"shard_bytes={shard_bytes} is not valid; expected a positive number of bytes")
    directory = str(directory)
    tf.io.gfile.makedirs(directory)
    manifest_location = storage.join(directory, MANIFEST_NAME)
    if tf.io.gfile.exists(manifest_location):  # a re-run: the old artifact stops being complete first
        tf.io.gfile.remove(manifest_location)
    manifest_splits: dict[str, Any] = {}
    for name, part in splits.items():
        shards = _write_split(part, directory, name, int(shard_bytes))
        manifest_splits[name] = {
            "count": len(part),
            "class_counts": part.class_counts(),
            "shards": [shard.to_dict() for shard in shards],
        }
    manifest = {
        "format": ARTIFACT_FORMAT,
        "source": splits.source,
        "seed": splits.seed,
        "class_names": list(splits.class_names),
        "content_hash": splits.content_hash,
        "counts": {name: len(part) for name, part in splits.items()},
        "shard_bytes": int(shard_bytes),
        "features": {FEATURE_IMAGE: "encoded image bytes as read", FEATURE_LABEL: "class index",
                     FEATURE_SHA256: "sha256 of the source file (of the pixels for array sources)"},
        "splits": manifest_splits,
        "report": report or {},
    }
    storage.atomic_write(manifest_location, json.dumps(manifest, indent=1).encode("utf-8") + b"\n")
    return open_dataset_artifact(directory, verify=False)


def _write_split(part: LabelledImages, directory: str, name: str, shard_bytes: int) -> list[Shard]:
    digests = file_digests(part)
    examples = ((_image_bytes(part, index, digests[index]), int(part.labels[index]), digests[index])
                for index in range(len(part)))
    return write_examples(examples, directory, name, shard_bytes)


def write_examples(examples: Iterable[tuple[bytes, int, str]], directory: str, name: str,
                   shard_bytes: int = DEFAULT_SHARD_BYTES) -> list[Shard]:
    """Write (encoded image bytes, label, sha256) records as split `name`'s shards under
    `directory` (each shard written to a temp name, then renamed); returns the shards written."""
    import tensorflow as tf

    folder = storage.join(directory, name)
    if tf.io.gfile.exists(folder):  # a re-run of ingest into the same artifact: start clean
        tf.io.gfile.rmtree(folder)
    tf.io.gfile.makedirs(folder)
    shards: list[Shard] = []
    writer: Any = None
    current: dict[str, Any] = {}

    def close() -> None:
        nonlocal writer
        if writer is None:
            return
        writer.close()
        writer = None
        final = storage.join(folder, current["name"])
        tf.io.gfile.rename(current["tmp"], final, overwrite=True)
        size, sha = _size_and_sha256(final)
        shards.append(Shard(path=f"{name}/{current['name']}", count=current["count"], size=size, sha256=sha))

    for image_bytes, label, digest in examples:
        example = make_example(image_bytes, int(label), digest)
        if writer is None:
            shard_name = f"{name}-{len(shards):05d}{SHARD_SUFFIX}"
            current = {"name": shard_name, "tmp": storage.join(folder, f".{shard_name}.{uuid.uuid4().hex}.tmp"),
                       "count": 0, "bytes": 0}
            writer = tf.io.TFRecordWriter(current["tmp"])
        writer.write(example)
        current["count"] += 1
        current["bytes"] += len(example)
        if current["bytes"] >= shard_bytes:
            close()
    close()
    return shards


def _image_bytes(part: LabelledImages, index: int, digest: str) -> bytes:
    import tensorflow as tf

    if part.paths is not None:
        path = part.paths[index]
        try:
            with tf.io.gfile.GFile(path, "rb") as handle:
                content = handle.read()
        except (tf.errors.OpError, OSError) as err:
            raise DataError(f"cannot read {path} while writing the dataset artifact: {err}") from err
        if storage.sha256_bytes(content) != digest:
            raise DataError(f"{path} changed while the dataset was ingested (its sha256 differs from the scan's); "
                            "re-run ingest once the dataset stops changing")
        return content
    assert part.images is not None
    return tf.io.encode_png(part.images[index]).numpy()


def make_example(image_bytes: bytes, label: int, sha256: str) -> bytes:
    import tensorflow as tf

    feature = {
        FEATURE_IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
        FEATURE_LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        FEATURE_SHA256: tf.train.Feature(bytes_list=tf.train.BytesList(value=[sha256.encode("ascii")])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_example_numpy(raw: bytes, location: str = "") -> tuple[bytes, int, str]:
    import tensorflow as tf

    example = tf.train.Example.FromString(raw)
    features = example.features.feature
    try:
        return (
            features[FEATURE_IMAGE].bytes_list.value[0],
            int(features[FEATURE_LABEL].int64_list.value[0]),
            features[FEATURE_SHA256].bytes_list.value[0].decode("ascii"),
        )
    except (IndexError, KeyError) as err:
        raise DataError(f"a record in {location} lacks image/label/sha256; not an ingot dataset shard") from err


def parse_example_tensors(serialized: Any) -> tuple[Any, Any]:
    """(encoded image bytes, int64 label) from one serialized record, inside a tf.data graph."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, {
        FEATURE_IMAGE: tf.io.FixedLenFeature([], tf.string),
        FEATURE_LABEL: tf.io.FixedLenFeature([], tf.int64),
    })
    return parsed[FEATURE_IMAGE], parsed[FEATURE_LABEL]


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def is_dataset_artifact(directory: str) -> bool:
    import tensorflow as tf

    return bool(tf.io.gfile.exists(storage.join(str(directory), MANIFEST_NAME)))


def open_dataset_artifact(directory: str, *, verify: bool = True) -> DatasetArtifact:
    """Open the artifact at `directory` through tf.io.gfile.

    With `verify`, every shard's size and sha256 are checked against the manifest (one
    sequential read of the shards), so a corrupt or truncated shard fails here with its name
    rather than as a CRC error deep inside training."""
    import tensorflow as tf

    directory = str(directory)
    location = storage.join(directory, MANIFEST_NAME)
    if not tf.io.gfile.exists(location):
        raise DataError(f"{directory} has no {MANIFEST_NAME}; expected a Dataset artifact written by the ingest step")
    try:
        with tf.io.gfile.GFile(location, "rb") as handle:
            manifest = json.loads(handle.read().decode("utf-8"))
    except (tf.errors.OpError, OSError, ValueError) as err:
        raise DataError(f"{location} is not readable JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataError(f"{location} has format {found!r}; expected {ARTIFACT_FORMAT!r}")
    class_names = [str(name) for name in manifest["class_names"]]
    parts: dict[str, RecordSplit] = {}
    for name in [*SPLIT_NAMES, *sorted(set(manifest["splits"]) - set(SPLIT_NAMES))]:
        entry = manifest["splits"][name]
        shards = [Shard(**shard) for shard in entry["shards"]]
        parts[name] = RecordSplit(
            name=name, class_names=class_names, files=[storage.join(directory, shard.path) for shard in shards],
            counts={str(k): int(v) for k, v in entry["class_counts"].items()}, shards=shards,
        )
        if sum(shard.count for shard in shards) != int(entry["count"]):
            raise DataError(f"{location}: the {name} shards hold {sum(s.count for s in shards)} records but the "
                            f"manifest counts {entry['count']}; the manifest was edited")
    artifact = DatasetArtifact(
        directory=directory, class_names=class_names, content_hash=str(manifest["content_hash"]),
        source=str(manifest.get("source", "")), seed=manifest.get("seed"), report=dict(manifest.get("report") or {}),
        manifest=manifest, extra={name: part for name, part in parts.items() if name not in SPLIT_NAMES},
        **{name: parts[name] for name in SPLIT_NAMES},
    )
    if verify:
        verify_shards(artifact)
    return artifact


def verify_shards(artifact: DatasetArtifact) -> None:
    """Check every shard against the manifest (a DataError names the first bad one), then the
    content hash against the records' own labels and digests (an edited manifest)."""
    import tensorflow as tf

    for _, part in artifact.all_items():  # noqa: PERF102 - the split order, not a dict
        for shard, location in zip(part.shards, part.files):
            if not tf.io.gfile.exists(location):
                raise DataError(f"shard {location} is missing from the Dataset artifact; re-run ingest")
            size, sha = _size_and_sha256(location)
            if size != shard.size or sha != shard.sha256:
                raise DataError(
                    f"shard {location} is corrupt: {size} bytes with sha256 {sha[:12]}..., the manifest records "
                    f"{shard.size} bytes with sha256 {shard.sha256[:12]}...; re-run ingest"
                )
    actual = _records_content_hash(artifact)
    if actual != artifact.content_hash:
        raise DataError(
            f"the Dataset artifact in {artifact.directory} does not match its content hash (manifest "
            f"{artifact.content_hash[:12]}..., records {actual[:12]}...); the manifest was edited after ingest"
        )


def _records_content_hash(artifact: DatasetArtifact) -> str:
    """The content hash from the records' labels and digests, parsed in batches by tf.data."""
    import tensorflow as tf

    spec = {FEATURE_LABEL: tf.io.FixedLenFeature([], tf.int64), FEATURE_SHA256: tf.io.FixedLenFeature([], tf.string)}
    rows: list[tuple[str, str, str]] = []
    for name, part in artifact.all_items():
        if not part.files:
            continue
        batches = tf.data.TFRecordDataset(part.files).batch(1024).map(lambda raw: tf.io.parse_example(raw, spec))
        for batch in batches.as_numpy_iterator():
            for label, sha in zip(batch[FEATURE_LABEL], batch[FEATURE_SHA256]):
                if not 0 <= int(label) < len(artifact.class_names):
                    raise DataError(f"a record in the {name} split has label {int(label)}, outside the "
                                    f"{len(artifact.class_names)} classes of {artifact.directory}")
                rows.append((name, sha.decode("ascii"), artifact.class_names[int(label)]))
    return compute_content_hash(rows)


def decoded_records(split: RecordSplit, image_size: Any, *, parallel_reads: int | None = None) -> Any:
    """A deterministic tf.data.Dataset of (uint8 [H,W,3], int64 label) from the split's shards:
    files read in parallel through interleave, each image through `decode_and_resize` (the
    serving signature's decoder). Order is fixed, so validation and test are repeatable."""
    import tensorflow as tf

    from ingot.data.preprocess import decode_and_resize

    if not split.files:
        raise DataError(f"the {split.name} split of the Dataset artifact has no shards")
    autotune = tf.data.AUTOTUNE
    height, width = int(image_size[0]), int(image_size[1])
    files = tf.data.Dataset.from_tensor_slices(list(split.files))
    cycle = parallel_reads or min(len(split.files), 8)
    records = files.interleave(
        tf.data.TFRecordDataset, cycle_length=cycle, num_parallel_calls=autotune, deterministic=True
    )

    def decode(serialized: Any) -> tuple[Any, Any]:
        image_bytes, label = parse_example_tensors(serialized)
        return decode_and_resize(image_bytes, (height, width)), label

    return records.map(decode, num_parallel_calls=autotune, deterministic=True)


def decoded_arrays(split: RecordSplit, image_size: Any) -> tuple[np.ndarray, np.ndarray]:
    """All of a split's images (uint8 [N,H,W,3], decoded as training decodes) and labels."""
    images, labels = [], []
    for batch_images, batch_labels in decoded_records(split, image_size).batch(256).as_numpy_iterator():
        images.append(batch_images)
        labels.append(batch_labels)
    if not images:
        return np.zeros((0, int(image_size[0]), int(image_size[1]), 3), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# gfile helpers
# ---------------------------------------------------------------------------------------------


def _size_and_sha256(location: str) -> tuple[int, str]:
    with storage.open_file(location, "rb") as handle:
        digest = storage.sha256_stream(handle)
        return handle.tell(), digest


def _tf_message(err: BaseException) -> str:
    return getattr(err, "message", None) or str(err).strip().splitlines()[0]
