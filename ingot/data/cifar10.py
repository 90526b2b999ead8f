"""CIFAR-10 in its official python format (an archive or its extracted directory, read with an
unpickler that admits numpy arrays only) and through `keras.datasets`."""

from __future__ import annotations

import os
import pickle
import re
import tarfile
from typing import Any, BinaryIO

import numpy as np

from ingot.data.dataset import LabelledImages
from ingot.data.report import DataReport
from ingot.data.sources import (
    DEFAULT_MIN_IMAGES_PER_CLASS,
    LoadResult,
    _join,
    _normalize_location,
    _visible_entries,
    check_class_counts,
)
from ingot.errors import DataError

CIFAR10_CLASS_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]


# The globals a CIFAR-10 pickle may reference: numpy's array reconstruction, nothing else.
_ALLOWED_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles data batches without letting a crafted archive run arbitrary code."""

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_PICKLE_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        import importlib

        return getattr(importlib.import_module(target[0]), target[1])


def _unpickle(handle: BinaryIO, name: str) -> dict:
    try:
        value = _CifarUnpickler(handle, encoding="bytes").load()
    except Exception as err:  # noqa: BLE001 - any failure means the file is not a CIFAR batch.
        raise DataError(f"{name} is not a CIFAR-10 python batch ({type(err).__name__}: {err})") from err
    if not isinstance(value, dict):
        raise DataError(f"{name} is not a CIFAR-10 python batch (expected a pickled dict)")
    return value


def _batch_order(name: str) -> tuple[int, int]:
    if name == "test_batch":
        return (1, 0)
    match = re.fullmatch(r"data_batch_(\d+)", name)
    return (0, int(match.group(1)) if match else 0)


def _is_batch_name(name: str) -> bool:
    return name == "test_batch" or re.fullmatch(r"data_batch_\d+", name) is not None


def load_cifar10(
    path: str | os.PathLike[str],
    *,
    include_test_batch: bool = True,
    min_images_per_class: int = DEFAULT_MIN_IMAGES_PER_CLASS,
) -> LoadResult:
    """Read `cifar-10-python.tar.gz` or its extracted `cifar-10-batches-py` directory.

    The official train/test partition is merged (with `include_test_batch`) because Ingot draws
    its own seeded stratified split; images come back NHWC uint8 with names from batches.meta.
    """
    import tensorflow as tf

    location = _normalize_location(path)
    if not tf.io.gfile.exists(location):
        raise DataError(
            f"dataset path {location} does not exist; expected cifar-10-python.tar.gz or the "
            "extracted cifar-10-batches-py directory"
        )
    if tf.io.gfile.isdir(location):
        names = {n: _join(location, n) for n in _visible_entries(location)}
        batches = {n: p for n, p in names.items() if _is_batch_name(n)}

        def read(member_path: str, name: str) -> dict:
            with tf.io.gfile.GFile(member_path, "rb") as handle:
                return _unpickle(handle, name)

        meta = read(names["batches.meta"], "batches.meta") if "batches.meta" in names else None
        raw = {n: read(p, n) for n, p in batches.items() if include_test_batch or n != "test_batch"}
    else:
        meta, raw = _read_cifar_archive(location, include_test_batch)

    if not any(n.startswith("data_batch_") for n in raw):
        raise DataError(
            f"{location} has no data_batch_* files; expected cifar-10-python.tar.gz or the "
            "extracted cifar-10-batches-py directory (data_batch_1..5, test_batch, batches.meta)"
        )
    if meta is None or b"label_names" not in meta:
        raise DataError(f"{location} has no batches.meta with label_names; expected the official layout")
    class_names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]

    images, labels = [], []
    for name in sorted(raw, key=_batch_order):
        batch_images, batch_labels = _decode_cifar_batch(raw[name], name, len(class_names))
        images.append(batch_images)
        labels.append(batch_labels)
    all_images = np.concatenate(images)
    all_labels = np.concatenate(labels)
    return _array_result(location, "cifar10", class_names, all_images, all_labels, min_images_per_class)


def _read_cifar_archive(location: str, include_test_batch: bool) -> tuple[dict | None, dict[str, dict]]:
    import tensorflow as tf

    meta: dict | None = None
    raw: dict[str, dict] = {}
    try:
        with tf.io.gfile.GFile(location, "rb") as handle, tarfile.open(fileobj=handle, mode="r:*") as tar:
            for member in tar:
                name = os.path.basename(member.name)
                if not member.isfile() or not (name == "batches.meta" or _is_batch_name(name)):
                    continue
                if name == "test_batch" and not include_test_batch:
                    continue
                extracted = tar.extractfile(member)
                if extracted is None:
                    continue
                value = _unpickle(extracted, f"{location}:{member.name}")
                if name == "batches.meta":
                    meta = value
                else:
                    raw[name] = value
    except tarfile.TarError as err:
        raise DataError(
            f"{location} is not a readable tar archive ({err}); expected cifar-10-python.tar.gz"
        ) from err
    return meta, raw


def _decode_cifar_batch(batch: dict, name: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if b"data" not in batch or b"labels" not in batch:
        raise DataError(f"CIFAR-10 batch {name} lacks b'data' or b'labels'; expected the official layout")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64).reshape(-1)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != len(labels):
        raise DataError(
            f"CIFAR-10 batch {name} has data of shape {data.shape} and {len(labels)} labels; "
            "expected (N, 3072) rows of 1024 red, 1024 green, 1024 blue values and N labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"CIFAR-10 batch {name} has labels outside 0..{num_classes - 1}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_keras_cifar10(*, min_images_per_class: int = DEFAULT_MIN_IMAGES_PER_CLASS) -> LoadResult:
    """CIFAR-10 through `keras.datasets` (downloads once into ~/.keras/datasets; needs network)."""
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as err:  # noqa: BLE001 - download/IO failures come in many types.
        raise DataError(
            "could not load CIFAR-10 through keras.datasets.cifar10.load_data() "
            f"({type(err).__name__}: {err}); it downloads the archive on first use, which needs "
            "network access: pass the path of a local cifar-10-python.tar.gz or extracted "
            "cifar-10-batches-py directory instead"
        ) from err
    images = np.concatenate([np.asarray(x_train), np.asarray(x_test)]).astype(np.uint8)
    if images.ndim == 4 and images.shape[1] == 3 and images.shape[-1] != 3:
        images = images.transpose(0, 2, 3, 1)  # channels_first image_data_format
    labels = np.concatenate([np.asarray(y_train).reshape(-1), np.asarray(y_test).reshape(-1)])
    return _array_result(
        "keras.datasets.cifar10", "keras_cifar10", list(CIFAR10_CLASS_NAMES),
        np.ascontiguousarray(images), labels.astype(np.int64), min_images_per_class,
    )


def _array_result(
    source: str, kind: str, class_names: list[str], images: np.ndarray, labels: np.ndarray,
    min_images_per_class: int,
) -> LoadResult:
    counts = np.bincount(labels, minlength=len(class_names))
    count = len(labels)
    report = DataReport.build(
        source=source,
        kind=kind,
        class_counts={name: int(counts[i]) for i, name in enumerate(class_names)},
        heights=[int(images.shape[1])] * count,
        widths=[int(images.shape[2])] * count,
    )
    check_class_counts(report, min_images_per_class)
    data = LabelledImages(class_names=class_names, labels=labels, images=images, source=source)
    return data, report


