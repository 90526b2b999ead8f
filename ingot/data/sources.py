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
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingot import settings, storage
from ingot.data.dataset import LabelledImages
from ingot.data.report import DataReport, SkippedFile
from ingot.errors import DataError

IMAGE_EXTENSIONS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP"}
DEFAULT_MIN_IMAGES_PER_CLASS = 5
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
        sha256=storage.sha256_bytes(content),
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

    from ingot.data.cifar10 import load_cifar10, load_keras_cifar10

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
