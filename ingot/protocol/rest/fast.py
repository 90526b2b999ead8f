"""The fast path for the common large request, `{"instances": <dense integer array>}` (or
"inputs", with an optional simple "signature_name"): the body's bytes read without json.loads.
Anything the fast path is unsure of goes to the general parser (ingot.protocol.rest.request)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

_SIGNATURE = rb'"signature_name"\s*:\s*"(?P<sig%d>[A-Za-z0-9_.\-/]*)"\s*'
_FAST_HEAD = re.compile(rb"\A\s*\{\s*(?:" + _SIGNATURE % 1 + rb",\s*)?\"(?P<key>instances|inputs)\"\s*:\s*\[")
_FAST_TAIL = re.compile(rb"\]\s*(?:,\s*" + _SIGNATURE % 2 + rb")?\}\s*\Z")
_MAX_DIGITS = 18  # fits int64; longer numbers take the general path


def dense_request_parts(body: bytes) -> tuple[str, bool, bytes] | None:
    """(signature name, row format, the text of the array) of a body shaped like the common
    request, or None for any other body."""
    head = _FAST_HEAD.match(body)
    if head is None:
        return None
    tail = _FAST_TAIL.search(body, len(body) - 300 if len(body) > 300 else 0)
    if tail is None or tail.start() < head.end() - 1:
        return None
    if head.group("sig1") is not None and tail.group("sig2") is not None:
        return None  # signature_name twice: the general parser decides
    raw_name = head.group("sig1") if head.group("sig1") is not None else tail.group("sig2")
    signature_name = raw_name.decode("ascii") if raw_name is not None else ""
    return signature_name, head.group("key") == b"instances", body[head.end() - 1:tail.start() + 1]


_WHITESPACE = b" \n\r\t"  # JSON's
_DIGITS = b"0123456789"
_NOT_ALLOWED = _DIGITS + b"[]," + _WHITESPACE  # deleted: anything left is not for the fast path
_DIGITS_AND_SPACE = _DIGITS + _WHITESPACE
_BRACKETS_TO_SPACES = bytes.maketrans(b"[]", b"  ")


def _skeleton(shape: tuple[int, ...]) -> bytes:
    """The brackets and commas of a dense nested list of that shape (no numbers, no spaces)."""
    text = b"[" + b"," * (shape[-1] - 1) + b"]"
    for size in reversed(shape[:-1]):
        text = b"[" + b",".join([text] * size) + b"]"
    return text


def parse_dense_integer_array(
    text: bytes, max_rank: int = 32, check_shape: Callable[[tuple[int, ...]], None] | None = None
) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """A JSON array of non-negative integers forming a dense tensor → (int64 values, shape).

    The structure is checked on the text's brackets and commas alone (bytes.translate, C passes),
    against the skeleton of the shape its first elements claim; the numbers are then read by
    numpy's C text reader. Returns None for anything else (signs, decimals, strings, leading
    zeros, huge numbers, empty lists or elements, ragged or malformed nesting), which the general
    parser then handles with its exact errors: the fast path accepts only text json.loads reads
    the same way.
    """
    if len(text) < 2 or text[:1] != b"[" or text.translate(None, _NOT_ALLOWED):
        return None
    skeleton = text.translate(None, _DIGITS_AND_SPACE)
    rank = len(skeleton) - len(skeleton.lstrip(b"["))
    if rank == 0 or rank > max_rank:
        return None  # deeper than allowed: the general path reports the nesting limit
    # The shape its first elements claim: the first list at level k ends at the first run of
    # rank - k closing brackets and repeats its first child.
    child = b""
    shape: list[int] = []
    for level in range(rank - 1, -1, -1):
        closing = b"]" * (rank - level)
        end = skeleton.find(closing, level)
        if end < 0:
            return None
        first = skeleton[level:end + len(closing)]
        if level == rank - 1:
            size = first.count(b",") + 1
        else:
            size, rest = divmod(len(first) - 1, len(child) + 1)
            if rest:
                return None
        shape.insert(0, size)
        child = first
    shape_t = tuple(shape)
    if skeleton != _skeleton(shape_t):
        return None  # ragged, unbalanced or trailing text
    # Numbers that are not JSON or not exact in int64: a leading zero, 19 digits or more.
    buf = np.frombuffer(text.translate(None, _WHITESPACE), dtype=np.uint8)
    separators = np.flatnonzero((buf - np.uint8(ord("0"))) >= 10)  # brackets and commas
    lengths = np.diff(separators) - 1
    if lengths.size and int(lengths.max()) > _MAX_DIGITS:
        return None
    numbers = lengths > 0
    if ((buf[separators[:-1][numbers] + 1] == ord("0")) & (lengths[numbers] > 1)).any():
        return None
    count = math.prod(shape_t)
    if int(numbers.sum()) != count:
        return None  # an empty element ("[1,,2]", "[]") or a number outside any element
    if check_shape is not None:
        check_shape(shape_t)  # rank, dimensions and element count, before the values exist
    try:  # digits split by whitespace stop numpy's reader: ValueError
        values = np.fromstring(text.translate(_BRACKETS_TO_SPACES), dtype=np.int64, sep=",")
    except ValueError:
        return None
    if values.size != count:
        return None
    return values.reshape(shape_t), shape_t
