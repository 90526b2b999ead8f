"""Tiny on-disk datasets the data tests generate: image folders and CIFAR-10-format batches."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp"}


def encode(array: np.ndarray, fmt: str) -> bytes:
    """Encode an array (H,W), (H,W,3) or (H,W,4) uint8 with Pillow in `fmt`."""
    image = Image.fromarray(array)
    if fmt == "GIF":
        image = image.convert("P") if image.mode != "L" else image
    if fmt == "JPEG" and image.mode == "RGBA":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def pixels(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture
def write_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: {class: count} (or {class: [(fmt, channels, (h, w)), ...]}) → a class-per-folder dir."""

    def write(spec: dict, root: Path | None = None) -> Path:
        root = root or tmp_path / "images"
        root.mkdir(parents=True, exist_ok=True)
        seed = 0
        for class_name, files in spec.items():
            folder = root / class_name
            folder.mkdir(exist_ok=True)
            if isinstance(files, int):
                files = [("PNG", 3, (8, 8))] * files
            for index, (fmt, channels, size) in enumerate(files):
                seed += 1
                shape = size if channels == 1 else (*size, channels)
                (folder / f"img{index:03d}{EXTENSIONS[fmt]}").write_bytes(encode(pixels(seed, shape), fmt))
        return root

    return write


@pytest.fixture
def mixed_folder(write_folder: Callable[..., Path]) -> Path:
    """Three classes in every format, grayscale and RGBA files, one corrupt file, and clutter."""
    root = write_folder(
        {
            "cat": [("PNG", 3, (8, 8)), ("JPEG", 3, (10, 8)), ("GIF", 3, (8, 8)), ("BMP", 3, (8, 12))],
            "dog": [("PNG", 1, (8, 8)), ("JPEG", 1, (12, 12)), ("PNG", 4, (8, 8)), ("BMP", 3, (8, 8))],
            "fox": [("PNG", 3, (6, 6)), ("GIF", 1, (8, 8)), ("JPEG", 3, (16, 8)), ("PNG", 3, (8, 8))],
        }
    )
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated, not a jpeg")
    (root / "cat" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".hidden_class").mkdir()
    (root / ".hidden_class" / "x.png").write_bytes(encode(pixels(99, (8, 8, 3)), "PNG"))
    (root / "LICENSE.txt").write_text("top-level files are not classes")
    return root


@pytest.fixture
def dataset_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point DATASET_ROOT at a temp dir so the bundled digits never land in the real cache."""
    root = tmp_path / "datasets"
    monkeypatch.setenv("DATASET_ROOT", str(root))
    return root


def _cifar_batch(seed: int, count: int, num_classes: int) -> dict:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    # The official layout: each row is 1024 red, then 1024 green, then 1024 blue values.
    rows = images.transpose(0, 3, 1, 2).reshape(count, 3072)
    labels = [int(v) for v in np.arange(count) % num_classes]
    return {b"batch_label": b"synthetic", b"labels": labels, b"data": rows,
            b"filenames": [f"{seed}_{i}.png".encode() for i in range(count)]}


@pytest.fixture
def cifar_dir(tmp_path: Path) -> tuple[Path, dict]:
    """A tiny extracted `cifar-10-batches-py` directory (2 train batches, a test batch, meta)."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = [b"airplane", b"automobile", b"bird"]
    batches = {f"data_batch_{i}": _cifar_batch(i, 6, len(names)) for i in (1, 2)}
    batches["test_batch"] = _cifar_batch(9, 3, len(names))
    for name, batch in batches.items():
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": 6, b"num_vis": 3072}, handle)
    return folder, batches


@pytest.fixture
def cifar_archive(cifar_dir: tuple[Path, dict], tmp_path: Path) -> tuple[Path, dict]:
    folder, batches = cifar_dir
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=os.path.basename(folder))
    return archive, batches


@pytest.fixture
def encode_image() -> Callable[[np.ndarray, str], bytes]:
    return encode


@pytest.fixture
def random_pixels() -> Callable[..., np.ndarray]:
    return pixels
