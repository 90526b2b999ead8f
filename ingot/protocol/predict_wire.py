"""A PredictRequest read without copying its tensors' bytes.

Parsing a serialized PredictRequest with protobuf copies every `tensor_content` into the message,
and each read of the field copies it again into a new `bytes`, so a 63 MiB image batch was held
three or four times over while it was served. Here the top level of the wire format is walked by
hand: each input's `tensor_content` is cut out and kept as a memoryview into the received buffer
(numpy reads it in place), and protobuf parses only what is left (shapes, dtypes, model spec:
a few hundred bytes). Anything unusual (a malformed varint, an input whose value comes in several
pieces, a group) falls back to protobuf's own parse, so protobuf stays the judge of what is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_INPUTS = 2  # PredictRequest.inputs: map<string, TensorProto>, one entry message per input
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_TENSOR_CONTENT = 4  # TensorProto.tensor_content
_LENGTH_DELIMITED = 2
_MIN_CONTENT = 1 << 12  # smaller contents are not worth a second parse


class _Irregular(Exception):
    """The bytes are not plainly laid out; let protobuf parse them."""


@dataclass
class LeanPredictRequest:
    """A PredictRequest without its inputs' tensor_content, and those contents by input name
    (memoryviews into the buffer the request arrived in)."""

    message: Any
    contents: dict[str, memoryview]


def _varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Irregular
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview, start: int, end: int):
    """(field number, wire type, start of the field's bytes, start of its value, end) per field."""
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _varint(data, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise _Irregular
        value_start = pos
        if wire_type == 0:
            _, pos = _varint(data, pos, end)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == _LENGTH_DELIMITED:
            length, value_start = _varint(data, pos, end)
            pos = value_start + length
        else:  # groups (3, 4) and invalid wire types
            raise _Irregular
        if pos > end:
            raise _Irregular
        yield number, wire_type, field_start, value_start, pos


def _length_prefixed(tag: int, payload: bytes) -> bytes:
    return _encode_varint(tag) + _encode_varint(len(payload)) + payload


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _split_entry(data: memoryview, start: int, end: int) -> tuple[str, bytes | None, memoryview | None]:
    """One inputs map entry → (key, the entry re-encoded without tensor_content, the content);
    (key, None, None) when it has no tensor_content worth cutting out."""
    key: str | None = None
    value: tuple[int, int] | None = None
    for number, wire_type, _, value_start, value_end in _fields(data, start, end):
        if wire_type != _LENGTH_DELIMITED or number not in (_ENTRY_KEY, _ENTRY_VALUE):
            raise _Irregular
        if number == _ENTRY_KEY:
            if key is not None:
                raise _Irregular
            key = bytes(data[value_start:value_end]).decode("utf-8")
        else:
            if value is not None:  # a value in pieces is merged by protobuf: let it
                raise _Irregular
            value = (value_start, value_end)
    if key is None or value is None:
        raise _Irregular
    content: memoryview | None = None
    kept: list[bytes] = []
    for number, wire_type, field_start, value_start, value_end in _fields(data, *value):
        if number == _TENSOR_CONTENT:
            if wire_type != _LENGTH_DELIMITED or content is not None:
                raise _Irregular
            content = data[value_start:value_end]
        else:
            kept.append(bytes(data[field_start:value_end]))
    if content is None or len(content) < _MIN_CONTENT:
        return key, None, None
    tensor = b"".join(kept)
    entry = _length_prefixed(_ENTRY_KEY << 3 | _LENGTH_DELIMITED, key.encode("utf-8"))
    entry += _length_prefixed(_ENTRY_VALUE << 3 | _LENGTH_DELIMITED, tensor)
    return key, entry, content


def parse_predict_request(data: bytes, message_class: Any) -> Any:
    """`message_class.FromString(data)`, or a LeanPredictRequest when some input carries its
    values in tensor_content (then nothing of those bytes is copied). Raises what FromString
    raises for bytes that are not a PredictRequest."""
    try:
        view = memoryview(data)
        pieces: list[bytes | memoryview] = []
        contents: dict[str, memoryview] = {}
        keys: set[str] = set()
        for number, wire_type, field_start, value_start, value_end in _fields(view, 0, len(view)):
            if number == _INPUTS and wire_type == _LENGTH_DELIMITED:
                key, entry, content = _split_entry(view, value_start, value_end)
                if key in keys:  # a repeated key (protobuf keeps the last entry): let protobuf parse it
                    raise _Irregular
                keys.add(key)
                if entry is not None and content is not None:
                    contents[key] = content
                    pieces.append(_length_prefixed(_INPUTS << 3 | _LENGTH_DELIMITED, entry))
                    continue
            pieces.append(view[field_start:value_end])
    except (_Irregular, UnicodeDecodeError):
        return message_class.FromString(data)
    if not contents:
        return message_class.FromString(data)
    return LeanPredictRequest(message_class.FromString(b"".join(pieces)), contents)
