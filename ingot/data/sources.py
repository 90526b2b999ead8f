"""Dataset sources: an image folder (one subfolder per class), CIFAR-10's python format, CIFAR-10
through keras.datasets, and the bundled digits written once as an image folder.

Every loader returns `(LabelledImages, DataReport)` and applies the same checks, so whichever
source a run uses, a bad dataset fails the same way: early, with a message that says what was
found and what is expected. Folder listing and reading go through `tf.io.gfile`, so `gs://` and
`s3://` URIs work wherever TensorFlow has the filesystem plugin.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ingot import settings
from ingot.data.dataset import LabelledImages
from ingot.data.report import DataReport, SkippedFile
from ingot.errors import DataError

IMAGE_EXTENSIONS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP"}
DEFAULT_MIN_IMAGES_PER_CLASS = 5
CIFAR10_CLASS_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
DIGITS_DIR_NAME = "digits"
DATASET_MARKER = ".ingot-dataset.json"
FOLDER_LAYOUT_HINT = (
    "expected a folder with one subfolder per class holding JPEG/PNG/GIF/BMP files "
    "(e.g. flowers/daisy/1.jpg, flowers/roses/2.jpg), a CIFAR-10 python archive or directory, "
    "or 'bundled:digits'"
)

LoadResult = tuple[LabelledImages, DataReport]


# --------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------


@dataclass
class _Scanned:
    """What one decode of one file taught us."""

    sha256: str
    height: int
    width: int
    mode: str | None
    format: str


def load_image_folder(
    path: str | os.PathLike[str],
    *,
    min_images_per_class: int = DEFAULT_MIN_IMAGES_PER_CLASS,
    workers: int | None = None,
) -> LoadResult:
    """Scan a class-per-subfolder image folder; every file is decoded once by TensorFlow's decoder.

    Hidden files and folders and files without an image extension are ignored (and counted);
    files the training decoder cannot decode are skipped and listed with the reason.
    """
    import tensorflow as tf

    root = _normalize_location(path)
    if not tf.io.gfile.exists(root):
        raise DataError(f"dataset path {root} does not exist; {FOLDER_LAYOUT_HINT}")
    if not tf.io.gfile.isdir(root):
        raise DataError(f"dataset path {root} is a file, not a folder; {FOLDER_LAYOUT_HINT}")

    class_names: list[str] = []
    loose_images = 0
    ignored = 0
    for name in _visible_entries(root):
        full = _join(root, name)
        if tf.io.gfile.isdir(full):
            class_names.append(name)
        elif _image_format(name):
            loose_images += 1
        else:
            ignored += 1
    if len(class_names) < 2:
        found = f"{len(class_names)} class folder(s) {class_names}" if class_names else "no class folders"
        loose = f" and {loose_images} image file(s) directly inside it" if loose_images else ""
        raise DataError(
            f"dataset {root} has {found}{loose}; at least two classes are needed to train a "
            f"classifier: {FOLDER_LAYOUT_HINT}"
        )
    ignored += loose_images

    candidates: list[tuple[str, int]] = []
    for label, class_name in enumerate(class_names):
        class_dir = _join(root, class_name)
        for name in _visible_entries(class_dir):
            if _image_format(name):
                candidates.append((_join(class_dir, name), label))
            else:
                ignored += 1

    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_scan_file, [p for p, _ in candidates]))

    paths: list[str] = []
    labels: list[int] = []
    digests: list[str] = []
    scanned: list[_Scanned] = []
    skipped: list[SkippedFile] = []
    for (file_path, label), result in zip(candidates, results):
        if isinstance(result, SkippedFile):
            skipped.append(result)
            continue
        paths.append(file_path)
        labels.append(label)
        digests.append(result.sha256)
        scanned.append(result)

    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    report = DataReport.build(
        source=root,
        kind="image_folder",
        class_counts={name: int(counts[i]) for i, name in enumerate(class_names)},
        heights=[s.height for s in scanned],
        widths=[s.width for s in scanned],
        modes=[s.mode for s in scanned],
        formats=[s.format for s in scanned],
        skipped=skipped,
        ignored_files=ignored,
    )
    check_class_counts(report, min_images_per_class)
    data = LabelledImages(
        class_names=class_names, labels=np.asarray(labels, dtype=np.int64), paths=paths,
        sha256=digests, source=root,
    )
    return data, report


def _scan_file(path: str) -> _Scanned | SkippedFile:
    """Read and decode one file exactly as training will (channels=3, first frame)."""
    import hashlib

    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            content = handle.read()
    except (tf.errors.OpError, OSError) as err:
        return SkippedFile(path, f"cannot be read: {_tf_message(err)}")
    if not content:
        return SkippedFile(path, "empty file (0 bytes)")
    try:
        image = tf.io.decode_image(content, channels=3, expand_animations=False)
    except (tf.errors.OpError, ValueError) as err:
        return SkippedFile(path, f"not decodable as JPEG/PNG/GIF/BMP: {_tf_message(err)}")
    mode, fmt = _pillow_header(content)
    return _Scanned(
        sha256=hashlib.sha256(content).hexdigest(),
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        mode=mode,
        format=fmt or _image_format(path) or "unknown",
    )


def _pillow_header(content: bytes) -> tuple[str | None, str | None]:
    """The original colour mode and format from the header (TensorFlow already converted them)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(content)) as image:
            return image.mode, image.format
    except Exception:  # noqa: BLE001 - Pillow is only asked for metadata; TF decided validity.
        return None, None


def _tf_message(err: BaseException) -> str:
    message = getattr(err, "message", None) or str(err)
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    return " ".join(message.split())[:300]


def _image_format(name: str) -> str | None:
    return IMAGE_EXTENSIONS.get(os.path.splitext(name)[1].lower())


def _visible_entries(folder: str) -> list[str]:
    import tensorflow as tf

    names = (entry.rstrip("/") for entry in tf.io.gfile.listdir(folder))
    return sorted(name for name in names if name and not name.startswith("."))


def _is_remote(location: str) -> bool:
    return "://" in location


def _normalize_location(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    if _is_remote(text):
        return text.rstrip("/")
    return os.path.abspath(os.path.expanduser(text))


def _join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}" if _is_remote(folder) else os.path.join(folder, name)


def check_class_counts(report: DataReport, min_images_per_class: int) -> None:
    """Refuse a dataset with fewer than two usable classes or a class under the minimum."""
    minimum = max(1, int(min_images_per_class))
    counts = report.class_counts
    usable = [name for name, count in counts.items() if count > 0]
    if len(usable) < 2:
        raise _with_report(
            DataError(
                f"dataset {report.source} has {len(usable)} class(es) with decodable images "
                f"{usable} (classes found: {list(counts)}; {len(report.skipped)} file(s) skipped as "
                "undecodable); at least two classes are needed to train a classifier"
            ),
            report,
        )
    small = [(name, count) for name, count in counts.items() if count < minimum]
    if small:
        listed = ", ".join(f"'{name}' has {count}" for name, count in small)
        raise _with_report(
            DataError(
                f"dataset {report.source}: class {listed} image(s), under min_images_per_class="
                f"{minimum}; add images to that class, remove its folder, or lower "
                "min_images_per_class"
            ),
            report,
        )


def _with_report(err: DataError, report: DataReport) -> DataError:
    """Attach the report so a caller (the `ingot data report` command) can still show it."""
    err.report = report  # type: ignore[attr-defined]
    return err


# --------------------------------------------------------------------------------------------
# CIFAR-10, official python format
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# The bundled default: scikit-learn's digits as a PNG folder
# --------------------------------------------------------------------------------------------


def ensure_digits_folder(root: str | os.PathLike[str] | None = None) -> Path:
    """Write sklearn's 1,797 digits once as `<root>/digits/<0..9>/NNNN.png` and return the folder.

    Written into a hidden temp folder and renamed into place, so a crash never leaves a
    half-written dataset that a later run would mistake for the real one. Pixel values 0..16
    are scaled to 0..255 and saved as 8x8 grayscale PNG (the loader converts to RGB).
    """
    base = Path(root) if root is not None else settings.dataset_root()
    target = base / DIGITS_DIR_NAME
    if target.is_dir():
        return target
    base.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(base, f".{DIGITS_DIR_NAME}-tmp-")
    staging = Path(tempfile.mkdtemp(prefix=f".{DIGITS_DIR_NAME}-tmp-", dir=base))
    try:
        _write_digits(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # Not a lost race with another writer: a real failure.
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_digits(folder: Path) -> None:
    import sklearn
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    for name in (str(d) for d in range(10)):
        (folder / name).mkdir()
    for index, (image, label) in enumerate(zip(pixels, digits.target)):
        Image.fromarray(image, mode="L").save(folder / str(int(label)) / f"{index:04d}.png")
    marker = {
        "name": DIGITS_DIR_NAME,
        "source": "sklearn.datasets.load_digits",
        "sklearn_version": sklearn.__version__,
        "images": int(len(pixels)),
        "pixel_scale": "0..16 -> 0..255, 8x8 grayscale PNG",
    }
    (folder / DATASET_MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def _remove_stale_temp_dirs(base: Path, prefix: str, older_than_s: float = 3600.0) -> None:
    """Clear staging folders left by a crashed writer (not ones a live writer may be using)."""
    now = time.time()
    for entry in base.glob(f"{prefix}*"):
        try:
            if entry.is_dir() and now - entry.stat().st_mtime > older_than_s:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

BUNDLED = {"digits", "bundled:digits"}
KERAS_CIFAR10 = {"keras:cifar10", "keras.datasets.cifar10"}


def load_dataset(
    uri: str | os.PathLike[str],
    *,
    min_images_per_class: int = DEFAULT_MIN_IMAGES_PER_CLASS,
) -> LoadResult:
    """Load what `uri` names: 'digits'/'bundled:digits', 'keras:cifar10', a CIFAR-10 archive or
    batch directory, or an image folder (local path or a gs://, s3:// URI)."""
    import tensorflow as tf

    text = os.fspath(uri).strip()
    if not text:
        raise DataError(f"no dataset given; {FOLDER_LAYOUT_HINT}")
    if text in BUNDLED:
        return load_image_folder(ensure_digits_folder(), min_images_per_class=min_images_per_class)
    if text in KERAS_CIFAR10:
        return load_keras_cifar10(min_images_per_class=min_images_per_class)
    if text.startswith("bundled:"):
        raise DataError(f"unknown bundled dataset {text!r}; the bundled dataset is 'bundled:digits'")
    location = _normalize_location(text)
    if location.endswith((".tar.gz", ".tgz", ".tar")):
        return load_cifar10(location, min_images_per_class=min_images_per_class)
    if tf.io.gfile.isdir(location) and _looks_like_cifar_dir(location):
        return load_cifar10(location, min_images_per_class=min_images_per_class)
    return load_image_folder(location, min_images_per_class=min_images_per_class)


def _looks_like_cifar_dir(location: str) -> bool:
    import tensorflow as tf

    return any(tf.io.gfile.exists(_join(location, n)) for n in ("batches.meta", "data_batch_1"))


def iter_sources() -> Iterable[str]:
    """The URI forms load_dataset understands, for help texts."""
    return ("bundled:digits", "keras:cifar10", "PATH/cifar-10-python.tar.gz",
            "PATH/cifar-10-batches-py", "PATH/to/image-folder", "gs://bucket/image-folder")
