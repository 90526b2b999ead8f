"""Encoded images in string inputs: refuse a decompression bomb before anything decodes it.

A 1 MB PNG can declare 20000 x 20000 pixels and decode to over 1 GiB. Every string value that
starts with a JPEG, PNG, GIF or BMP signature (the formats TensorFlow's decode_image reads) has its
header read by Pillow (no pixel is decoded) and its declared width x height checked against the
limit. An image whose header cannot be read is refused too: what cannot be measured is not
handed to a decoder.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Mapping

import numpy as np

from ingot.protocol.status import invalid_argument

# Magic numbers, as tensorflow/core/kernels/image/decode_image_op.cc classifies them.
SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
)
DEFAULT_MAX_PIXELS = 50_000_000  # a 50-megapixel photo; about 150 MB decoded as RGB


def image_format(data: bytes) -> str | None:
    for magic, name in SIGNATURES:
        if data.startswith(magic):
            return name
    return None


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header; None when it is beyond even Pillow's own
    decompression-bomb bound (about 179 megapixels); a 400 when the header cannot be read."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.size
        except Image.DecompressionBombError:
            return None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
            raise invalid_argument(
                f"cannot read the {image_format(data)} image header ({err}); send a valid JPEG, PNG, GIF or BMP"
            ) from None


def check_image_sizes(name: str, values: Iterable[bytes], max_pixels: int) -> None:
    for index, data in enumerate(values):
        if not isinstance(data, bytes) or image_format(data) is None:
            continue
        size = declared_size(data)
        if size is None:
            raise invalid_argument(
                f"input '{name}' item {index}: a {image_format(data)} image declares more pixels than "
                f"even Pillow's decompression-bomb bound, far over the server's limit of {max_pixels} "
                "pixels per image (max_image_pixels); send a smaller image"
            )
        width, height = size
        if width * height > max_pixels:
            raise invalid_argument(
                f"input '{name}' item {index}: a {image_format(data)} image of {width}x{height} pixels "
                f"({width * height} pixels) is over the server's limit of {max_pixels} pixels per "
                "image (max_image_pixels); send a smaller image"
            )


def check_encoded_images(inputs: Mapping[str, np.ndarray], max_pixels: int | None) -> None:
    """Check every encoded image in the string inputs of a decoded request."""
    if not max_pixels:
        return
    for name, array in inputs.items():
        if array.dtype == object:
            check_image_sizes(name, array.ravel().tolist(), max_pixels)
