"""JSON text in and out: UTF-8 only, the nesting depth scanned before parsing, json.loads
semantics at orjson's speed, and the compact text TF Serving writes."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from ingot.protocol.rest.values import debug
from ingot.protocol.status import invalid_argument


def json_nesting_depth(body: bytes) -> int:
    """Maximum nesting of arrays/objects in a JSON text, ignoring brackets inside strings.

    Vectorized so a multi-megabyte body costs milliseconds: escaped backslashes and quotes are
    blanked, string membership comes from the parity of quotes before each bracket.
    """
    cleaned = body.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    buf = np.frombuffer(cleaned, dtype=np.uint8)
    brackets = np.flatnonzero((buf == 0x5B) | (buf == 0x7B) | (buf == 0x5D) | (buf == 0x7D))
    if brackets.size == 0:
        return 0
    quotes = np.flatnonzero(buf == 0x22)
    outside = (np.searchsorted(quotes, brackets) % 2) == 0
    brackets = brackets[outside]
    if brackets.size == 0:
        return 0
    chars = buf[brackets]
    steps = np.where((chars == 0x5B) | (chars == 0x7B), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max())


_OTHER_UNICODE_BOMS = (b"\xfe\xff", b"\xff\xfe")  # UTF-16 and UTF-32 (LE) byte order marks


def check_utf8_json(body: bytes) -> None:
    """JSON between systems is UTF-8 (RFC 8259 section 8.1). json.loads would also guess UTF-16
    and UTF-32, whose multi-byte characters can hide a quote or bracket byte from the byte-level
    depth scan; every such body has a NUL byte (or a UTF-16/32 byte order mark)."""
    if body.startswith(_OTHER_UNICODE_BOMS) or b"\x00" in body:
        raise invalid_argument(
            "JSON Parse error: the body is not UTF-8 text; JSON must be UTF-8 (RFC 8259), "
            "not UTF-16 or UTF-32"
        )




def parse_json_object(body: bytes, max_depth: int) -> dict:
    """A request body → its JSON object: non-empty, UTF-8, nested at most `max_depth` deep."""
    if not body or not body.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    check_utf8_json(body)
    depth = json_nesting_depth(body)
    if depth > max_depth:
        raise invalid_argument(
            f"JSON Parse error: nesting depth {depth} exceeds the limit of {max_depth}"
        )
    doc = _orjson_loads(body)
    if doc is _UNPARSED:
        doc = _stdlib_loads(body)
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {debug(doc)} Is not object")
    return doc


_UNPARSED = object()


def loads(body: bytes) -> Any:
    """json.loads semantics (NaN and Infinity too, as TF Serving writes them) at orjson's speed
    where orjson can read the text; raises ValueError for invalid JSON."""
    doc = _orjson_loads(body)
    return json.loads(body) if doc is _UNPARSED else doc


_LONG_INTEGER = re.compile(rb"[0-9]{20,}")  # orjson reads integers beyond 64 bits as floats


def _orjson_loads(body: bytes) -> Any:
    """orjson parses 2-4x faster than json (benchmarks/bench_rest_codec.py); what it refuses
    (NaN and Infinity, lone surrogates, every syntax error) or reads differently (integers
    beyond 64 bits) is left to json, whose semantics and error messages the API keeps."""
    import orjson

    if _LONG_INTEGER.search(body):
        return _UNPARSED
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _UNPARSED


def _stdlib_loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError as err:
        raise invalid_argument(f"JSON Parse error: the body is not UTF-8 text ({err.reason})") from None
    except (ValueError, RecursionError) as err:
        raise invalid_argument(f"JSON Parse error: {err}") from None


def dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=True).encode("utf-8")


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode("utf-8")

