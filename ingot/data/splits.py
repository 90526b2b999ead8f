"""Deterministic stratified train/validation/test splits and their content hash.

A split is a lineage artifact: the same data and seed give the same split on any machine, in any
listing order, wherever the files live (records are ordered by content before splitting), and
the content hash in the model card names exactly which bytes, labels and split membership a
model was trained and tested on. Splits are stored as the Dataset artifact (`ingot.data.records`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingot import storage
from ingot.data.dataset import LabelledImages
from ingot.errors import DataError

SPLIT_NAMES = ("train", "validation", "test")


@dataclass
class DatasetSplits:
    train: LabelledImages
    validation: LabelledImages
    test: LabelledImages
    class_names: list[str]
    content_hash: str
    source: str = ""
    seed: int | None = None

    def items(self) -> list[tuple[str, LabelledImages]]:
        return [(name, getattr(self, name)) for name in SPLIT_NAMES]

    def summary(self) -> dict[str, Any]:
        """Per-split class counts plus the hash: small enough for a model card or a log line."""
        return {
            "source": self.source,
            "seed": self.seed,
            "content_hash": self.content_hash,
            "class_names": list(self.class_names),
            "splits": {name: {"total": len(part), "class_counts": part.class_counts()}
                       for name, part in self.items()},
        }


def file_digests(data: LabelledImages) -> list[str]:
    """sha256 per image: file bytes for file sources (reused from the scan when known), raw
    pixel bytes plus shape for array sources."""
    if data.sha256 is not None:
        return list(data.sha256)
    if data.paths is not None:
        return [_sha256_file(path) for path in data.paths]
    assert data.images is not None
    return [_sha256_array(image) for image in data.images]


def _sha256_file(path: str) -> str:
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            return storage.sha256_stream(handle)
    except (tf.errors.OpError, OSError) as err:
        raise DataError(f"cannot read {path} to hash it: {err}; was the dataset moved or changed?") from err


def _sha256_array(image: np.ndarray) -> str:
    return storage.sha256_bytes(str(tuple(image.shape)).encode() + np.ascontiguousarray(image, dtype=np.uint8).tobytes())


def compute_content_hash(records: Iterable[tuple[str, str, str]]) -> str:
    """sha256 over the sorted (split, image sha256, class name) records, one line each.

    Class names (not label indices) go in, so renaming a class changes the hash too.
    """
    return storage.sha256_text("".join(f"{split}\t{sha}\t{class_name}\n" for split, sha, class_name in sorted(records)))


def _records(splits: dict[str, LabelledImages], class_names: list[str]) -> list[tuple[str, str, str]]:
    records = []
    for split, part in splits.items():
        for sha, label in zip(file_digests(part), part.labels):
            records.append((split, sha, class_names[int(label)]))
    return records


def split_dataset(
    data: LabelledImages,
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> DatasetSplits:
    """Stratified train/validation/test split, reproducible from `seed` alone.

    Images are first put in a canonical order (label, image sha256, path), so neither the order a
    filesystem lists files in nor where the dataset lives changes the split.
    """
    from sklearn.model_selection import train_test_split

    for name, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(value) < 1.0:
            raise DataError(f"{name}={value} is out of range; expected a fraction in [0, 1)")
    if validation_fraction + test_fraction >= 1.0:
        raise DataError(
            f"validation_fraction + test_fraction = {validation_fraction + test_fraction:.3f} leaves "
            "nothing to train on; expected a sum below 1"
        )
    digests = file_digests(data)
    keys = data.paths if data.paths is not None else [""] * len(data)
    order = sorted(range(len(data)), key=lambda i: (int(data.labels[i]), digests[i], keys[i]))
    canonical = np.asarray(order, dtype=np.int64)
    labels = data.labels[canonical]
    digested = LabelledImages(
        class_names=data.class_names, labels=data.labels, paths=data.paths, images=data.images,
        sha256=digests, source=data.source,
    )

    def cut(indices: np.ndarray, fraction: float, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Stratified cut of `fraction` of the canonical positions `indices` (both halves sorted)."""
        if fraction <= 0.0:
            return indices, indices[:0]
        try:
            keep, taken = train_test_split(
                indices, test_size=fraction, stratify=labels[indices], random_state=seed,
                shuffle=True,
            )
        except ValueError as err:
            counts = digested.subset(canonical[indices]).class_counts()
            raise DataError(
                f"cannot draw a stratified {part} split of {fraction:.3f} from {len(indices)} images "
                f"with class counts {counts}: {err}; add images to the small classes or lower "
                f"{part}_fraction"
            ) from err
        return np.sort(keep), np.sort(taken)

    everything = np.arange(len(canonical))
    rest, test = cut(everything, test_fraction, "test")
    remaining_share = 1.0 - test_fraction
    train, validation = cut(rest, validation_fraction / remaining_share, "validation")
    parts = {
        "train": digested.subset(canonical[train]),
        "validation": digested.subset(canonical[validation]),
        "test": digested.subset(canonical[test]),
    }
    return DatasetSplits(
        **parts,
        class_names=list(data.class_names),
        content_hash=compute_content_hash(_records(parts, data.class_names)),
        source=data.source,
        seed=seed,
    )
