"""Where a captured input lives and what bytes are stored for it.

    <capture_url>/<model>/<sha256[:2]>/<sha256>.<png|jpg|gif|bmp|webp|bin>

The name is the inference log's `input_sha256` for the row, so a log row finds its input with no
index. `serving_bytes` rows store the caller's encoded image exactly as sent (its hash is over
those bytes); uint8 image rows store a lossless PNG of the tensor (its hash is over the pixels).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

import numpy as np

from ingot import storage

EXTENSIONS = ("png", "jpg", "gif", "bmp", "webp", "bin")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"), (b"GIF8", "gif"), (b"BM", "bmp"))


def location(base: str, model: str, sha256: str, extension: str) -> str:
    return storage.join(base, model, sha256[:2], f"{sha256}.{extension}")


def parse(relative: str) -> tuple[str, str] | None:
    """(sha256, extension) of a path relative to `<capture_url>/<model>` that follows the layout,
    else None (a writer's temp file, a stray)."""
    parts = relative.split("/")
    if len(parts) != 2:
        return None
    sha, _, extension = parts[1].partition(".")
    if extension not in EXTENSIONS or not _SHA256.fullmatch(sha) or parts[0] != sha[:2]:
        return None
    return sha, extension


def sniff(data: bytes) -> str:
    """The file extension for encoded image bytes ('bin' when not a known image format)."""
    for magic, extension in _MAGIC:
        if data.startswith(magic):
            return extension
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def encode_png(image: np.ndarray) -> bytes:
    """A lossless PNG of one uint8 image [H, W, C] (C 1, 3 or 4)."""
    from PIL import Image

    pixels = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def capturable(inputs: Mapping[str, np.ndarray]) -> bool:
    """True for the two request shapes capture stores: one uint8 image batch [N, H, W, C] or one
    string input of encoded images (`serving_bytes`)."""
    if len(inputs) != 1:
        return False
    only = next(iter(inputs.values()))
    if only.dtype == np.uint8:
        return only.ndim == 4 and only.shape[-1] in (1, 3, 4)
    return only.dtype == object and only.ndim == 1


def row_payload(inputs: Mapping[str, np.ndarray], row: int) -> tuple[np.ndarray | bytes, str]:
    """What to store for one row, before any encoding: the uint8 image (PNG-encoded later, off the
    request path) or the encoded bytes as sent, with the file extension."""
    only = next(iter(inputs.values()))
    value = only[row]
    if only.dtype == np.uint8:
        return np.array(value, copy=True), "png"  # a copy: the budget counts what the queue holds
    data = value if isinstance(value, bytes) else str(value).encode()
    return data, sniff(data)
