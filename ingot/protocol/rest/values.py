"""JSON values of tensors, as TF Serving writes and reads them: `{"b64": ...}` leaves for bytes,
nested lists for shapes, and short renderings of values for error messages."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import numpy as np

from ingot.protocol.status import invalid_argument

B64_KEY = "b64"
BYTES_SUFFIX = "_bytes"  # string tensors named so hold binary data: {"b64": ...} on the wire
# orjson writes these dtypes itself (OPT_SERIALIZE_NUMPY), float32 in its shortest round-tripping
# decimal as TF Serving does.
ORJSON_KINDS = "iub"
ORJSON_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def orjson_array(array: np.ndarray) -> np.ndarray | None:
    """`array` ready for orjson to write (native byte order, contiguous), or None when orjson
    does not write its dtype or it holds NaN/Infinity (orjson would write null)."""
    if array.dtype.kind in ORJSON_KINDS or array.dtype in ORJSON_FLOATS:
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return None
        return np.ascontiguousarray(array.astype(array.dtype.newbyteorder("="), copy=False))
    return None


def debug(value: Any, limit: int = 256) -> str:
    """Short JSON rendering of a value for error messages (TF Serving truncates at 256 bytes)."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def is_b64_object(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(B64_KEY), str)


def decode_b64(value: dict) -> bytes:
    text = value[B64_KEY]
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise invalid_argument("Unable to base64 decode: the 'b64' value has non-ASCII characters") from None
    raw = raw.replace(b"-", b"+").replace(b"_", b"/")  # accept the web-safe alphabet too
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument(
            f"Unable to base64 decode: {debug(value, 64)} is not valid base64 data"
        ) from None



def nest(flat: list, shape: tuple[int, ...]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]



def as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")

