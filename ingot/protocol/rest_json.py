"""TF Serving's REST JSON: predict requests in, predictions out (util/json_tensor.cc semantics).

Pure functions: the HTTP handler hands over the raw body and gets numpy inputs back, or a
`ServingError` whose message says what was wrong and what was expected. The checks run in the
order that keeps a hostile body cheap: size (the HTTP layer), nesting depth (a vectorized scan
before parsing), JSON syntax, then per input the claimed shape and element count against the
signature before any array is built.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingot.protocol.status import Code, ServingError, invalid_argument
from ingot.protocol.tensors import (
    DT_BOOL,
    DT_STRING,
    DecodeBudget,
    SignatureSpec,
    TensorSpec,
    check_against_spec,
    string_tensor_bytes,
)

B64_KEY = "b64"
BYTES_SUFFIX = "_bytes"


@dataclass(frozen=True)
class JsonLimits:
    max_depth: int = 32
    max_elements: int = 1 << 24
    max_bytes: int = 128 << 20  # all inputs of one request, decoded (see tensors.TensorLimits)
    max_rows: int | None = None

    def budget(self) -> DecodeBudget:
        return DecodeBudget(self.max_bytes)


@dataclass
class PredictRequest:
    signature_name: str  # as sent ("" means serving_default)
    inputs: dict[str, np.ndarray]
    row_format: bool

    @property
    def batch_size(self) -> int:
        first = next(iter(self.inputs.values()))
        return int(first.shape[0]) if first.ndim else 1


# --------------------------------------------------------------------------- content encoding

CONTENT_ENCODINGS = ("gzip", "x-gzip", "deflate")
_INFLATE_CHUNK = 1 << 20


def decode_content(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """A gzip or deflate body, inflated a chunk at a time and refused (413) as soon as it passes
    `max_bytes`, so a small bomb never becomes a large buffer. Corrupt data is a 400."""
    import zlib

    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in CONTENT_ENCODINGS:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or an uncompressed body",
            http_status=415,
        )
    # gzip: a gzip header; deflate: a zlib stream (RFC 9110), or raw deflate as some clients send.
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else (zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS)
    inflater = zlib.decompressobj(wbits)
    out: list[bytes] = []
    total = 0
    pending = body
    try:
        while True:
            chunk = inflater.decompress(pending, _INFLATE_CHUNK)
            total += len(chunk)
            if total > max_bytes:
                raise ServingError(
                    Code.RESOURCE_EXHAUSTED,
                    f"Request body decompresses to more than the limit of {max_bytes} bytes",
                    http_status=413,
                )
            out.append(chunk)
            pending = inflater.unconsumed_tail
            if not pending and (inflater.eof or not chunk):
                break
        if not inflater.eof:
            raise zlib.error("the compressed data ends early")
    except zlib.error as err:
        raise invalid_argument(f"the request body is not valid {encoding} data ({err})") from None
    return b"".join(out)


# --------------------------------------------------------------------------- nesting depth


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


def parse_json_object(body: bytes, limits: JsonLimits) -> dict:
    if not body or not body.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    check_utf8_json(body)
    depth = json_nesting_depth(body)
    if depth > limits.max_depth:
        raise invalid_argument(
            f"JSON Parse error: nesting depth {depth} exceeds the limit of {limits.max_depth}"
        )
    doc = _orjson_loads(body)
    if doc is _UNPARSED:
        doc = _stdlib_loads(body)
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {_debug(doc)} Is not object")
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


def _debug(value: Any, limit: int = 256) -> str:
    """Short JSON rendering of a value for error messages (TF Serving truncates at 256 bytes)."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _json_type(value: Any) -> str:
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
            f"Unable to base64 decode: {_debug(value, 64)} is not valid base64 data"
        ) from None


# --------------------------------------------------------------------------- predict request


def parse_predict_request(
    body: bytes,
    signature_for: Callable[[str], SignatureSpec],
    limits: JsonLimits = JsonLimits(),
    *,
    fast_path: bool = True,
) -> PredictRequest:
    """Body of `POST /v1/models/...:predict` → validated numpy inputs.

    `signature_for(name)` returns the signature ("" meaning serving_default) or raises
    ServingError (model not found, signature not found). The common large body, a dense integer
    array for a single numeric input, skips json.loads (`parse_dense_integer_request`).
    """
    if fast_path:
        fast = parse_dense_integer_request(body, signature_for, limits)
        if fast is not None:
            return fast
    doc = parse_json_object(body, limits)
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument(
            f"JSON Value: {_debug(doc)} not formatted correctly. 'signature_name' key must be a string value."
        )
    signature = signature_for(signature_name)
    if not signature.inputs:
        raise invalid_argument(
            f"Failed to get input map for signature: {signature_name or 'DEFAULT'}"
        )
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid_argument(
            "JSON Value: not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"
        )
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid_argument("Expecting 'instances' to be an list/array")
        if not instances:
            raise invalid_argument("No values in 'instances' array")
        return PredictRequest(signature_name, _row_inputs(instances, signature, limits, limits.budget()), True)
    if has_inputs:
        return PredictRequest(
            signature_name, _columnar_inputs(doc["inputs"], signature, limits, limits.budget()), False
        )
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _row_inputs(instances: list, signature: SignatureSpec, limits: JsonLimits,
                budget: DecodeBudget) -> dict[str, np.ndarray]:
    names = list(signature.inputs)
    first = instances[0]
    objects = isinstance(first, dict) and not is_b64_object(first)
    if not objects and len(names) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            f"required as per tensorinfo_map (inputs: {','.join(names)})"
        )
    if not objects:
        for index, item in enumerate(instances):
            if isinstance(item, dict) and not is_b64_object(item):
                raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
        name = names[0]
        return {name: json_to_array(name, instances, signature.inputs[name], limits, budget)}
    columns: dict[str, list] = {name: [] for name in names}
    expected = set(names)
    for index, item in enumerate(instances):
        if not isinstance(item, dict) or is_b64_object(item):
            raise invalid_argument(f"Expecting object but got list at item {index} of input list")
        if set(item) != expected:
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{_debug(item, 128)} keys must be equal to: {','.join(sorted(expected))}"
            )
        for name in names:
            columns[name].append(item[name])
    return {name: json_to_array(name, columns[name], signature.inputs[name], limits, budget) for name in names}


def _columnar_inputs(value: Any, signature: SignatureSpec, limits: JsonLimits,
                     budget: DecodeBudget) -> dict[str, np.ndarray]:
    names = list(signature.inputs)
    if not isinstance(value, dict) or is_b64_object(value):
        if len(names) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                f"required as per tensorinfo_map (inputs: {','.join(names)})"
            )
        return {names[0]: json_to_array(names[0], value, signature.inputs[names[0]], limits, budget)}
    out = {}
    for name in names:
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        out[name] = json_to_array(name, value[name], signature.inputs[name], limits, budget)
    return out


def claimed_shape(value: Any) -> tuple[int, ...]:
    """The dense shape a nested list claims, following first elements (TF's GetDenseTensorShape)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def json_to_array(name: str, value: Any, spec: TensorSpec, limits: JsonLimits,
                  budget: DecodeBudget | None = None) -> np.ndarray:
    """One input's JSON value → numpy array of the signature's dtype, or a clear 400."""
    shape = claimed_shape(value)
    check_against_spec(name, shape, spec.dtype, spec, max_elements=limits.max_elements,
                       max_rows=limits.max_rows, budget=budget)
    if spec.dtype == DT_STRING:
        flat: list[bytes] = []
        _collect_strings(name, value, shape, 0, flat)
        if budget is not None:
            budget.charge(name, string_tensor_bytes(sum(map(len, flat)), len(flat)))
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    return _numeric_array(name, value, shape, spec)


def _collect_strings(name: str, value: Any, shape: tuple[int, ...], level: int, out: list) -> None:
    if level == len(shape):
        if isinstance(value, str):
            out.append(value.encode("utf-8"))
        elif is_b64_object(value):
            out.append(decode_b64(value))
        elif isinstance(value, dict):
            raise invalid_argument(
                f"JSON Value: {_debug(value, 64)} not formatted correctly for base64 data "
                "(expected {\"b64\": \"<base64 string>\"})"
            )
        else:
            raise invalid_argument(
                f"JSON Value: {_debug(value, 64)} Type: {_json_type(value)} is not of expected type: "
                f"string (input '{name}')"
            )
        return
    if not isinstance(value, list) or len(value) != shape[level]:
        raise _ragged(name, shape, value, level)
    for item in value:
        _collect_strings(name, item, shape, level + 1, out)


def _ragged(name: str, shape: tuple[int, ...], value: Any, level: int) -> Exception:
    got = f"list of size {len(value)}" if isinstance(value, list) else f"{_json_type(value)} {_debug(value, 64)}"
    want = f"a list of size {shape[level]}" if level < len(shape) else "a scalar"
    return invalid_argument(
        f"input '{name}': nested lists are not a dense tensor of shape "
        f"[{','.join(map(str, shape))}]: at depth {level} found {got}, expected {want}"
    )


def _first_offending_leaf(value: Any, ok: Callable[[Any], bool], budget: int = 1_000_000) -> Any:
    stack = [value]
    while stack and budget > 0:
        budget -= 1
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif not ok(item):
            return item
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numeric_array(name: str, value: Any, shape: tuple[int, ...], spec: TensorSpec) -> np.ndarray:
    target = spec.numpy_dtype
    want = spec.dtype_name
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raw = None
    if raw is None or raw.shape != shape or raw.dtype.kind in "OUSV":
        if spec.dtype == DT_BOOL:
            bad = _first_offending_leaf(value, lambda v: isinstance(v, bool))
        else:
            bad = _first_offending_leaf(value, _is_number)
        if bad is not None or (raw is not None and raw.dtype.kind in "OUSV" and raw.shape == shape):
            if bad is None:
                raise invalid_argument(f"input '{name}': a number is out of range for {want}")
            raise invalid_argument(
                f"JSON Value: {_debug(bad, 64)} Type: {_json_type(bad)} is not of expected type: {want} "
                f"(input '{name}')"
            )
        raise invalid_argument(
            f"input '{name}': nested lists are not a dense tensor; expected every level to have "
            f"the sizes of shape [{','.join(map(str, shape))}] claimed by the first elements"
        )
    kind = raw.dtype.kind
    if spec.dtype == DT_BOOL:
        if kind != "b":
            raise invalid_argument(f"input '{name}': expected true/false values for bool, got numbers")
        return raw
    if kind == "b":
        raise invalid_argument(
            f"JSON Value: true/false Type: Bool is not of expected type: {want} (input '{name}')"
        )
    if target.kind in "iu" and kind == "f":
        bad = _first_offending_leaf(value, lambda v: not isinstance(v, float))
        raise invalid_argument(
            f"JSON Value: {_debug(bad, 64)} Type: Number is not of expected type: {want} "
            f"(input '{name}' takes integers)"
        )
    return _checked_integers(name, raw, spec)


# --------------------------------------------------------------------------- fast path


_SIGNATURE = rb'"signature_name"\s*:\s*"(?P<sig%d>[A-Za-z0-9_.\-/]*)"\s*'
_FAST_HEAD = re.compile(rb"\A\s*\{\s*(?:" + _SIGNATURE % 1 + rb",\s*)?\"(?P<key>instances|inputs)\"\s*:\s*\[")
_FAST_TAIL = re.compile(rb"\]\s*(?:,\s*" + _SIGNATURE % 2 + rb")?\}\s*\Z")
_MAX_DIGITS = 18  # fits int64; longer numbers take the general path


def dense_skeleton(shape: tuple[int, ...]) -> bytes:
    """The text of a dense nested list of that shape with every number written as 0."""
    text = b"[" + b",".join([b"0"] * shape[-1]) + b"]"
    for size in reversed(shape[:-1]):
        text = b"[" + b",".join([text] * size) + b"]"
    return text


def parse_dense_integer_array(
    text: bytes, max_rank: int = 32, check_shape: Callable[[tuple[int, ...]], None] | None = None
) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """A JSON array of non-negative integers forming a dense tensor → (int64 values, shape).

    Vectorized over the bytes (no Python object per number), about 3x faster than json.loads
    + np.asarray for an image. Returns None for anything else (signs, decimals, strings,
    leading zeros, huge numbers, ragged or malformed nesting), which the general parser then
    handles with its exact errors: the fast path accepts only text json.loads reads the same way.
    """
    buf = np.frombuffer(text, dtype=np.uint8)
    if buf.size < 2 or buf[0] != ord("["):
        return None
    # Comparisons, not table lookups: each is one cheap pass over the bytes.
    digit = (buf - np.uint8(ord("0"))) < 10
    structural = (buf == ord(",")) | (buf == ord("[")) | (buf == ord("]"))
    space = (buf == ord(" ")) | (buf == ord("\n")) | (buf == ord("\r")) | (buf == ord("\t"))
    if not (digit | structural | space).all():
        return None
    run_start = digit.copy()
    run_start[1:] &= ~digit[:-1]
    run_end = digit.copy()
    run_end[:-1] &= ~digit[1:]
    starts = np.flatnonzero(run_start)
    ends = np.flatnonzero(run_end) + 1
    lengths = ends - starts
    if starts.size:
        if int(lengths.max()) > _MAX_DIGITS:
            return None
        if ((buf[starts] == ord("0")) & (lengths > 1)).any():
            return None  # leading zeros are not JSON
    # Structure: the brackets and commas, and each number's first digit written as 0.
    tokens = buf.take(np.flatnonzero(run_start | structural))
    tokens[(tokens - np.uint8(ord("0"))) < 10] = ord("0")
    opens = tokens == ord("[")
    rank = int(np.argmin(opens)) if not opens.all() else int(opens.size)
    if rank == 0 or rank > max_rank:
        return None  # deeper than allowed: the general path reports the nesting limit
    steps = opens.astype(np.int8) - (tokens == ord("]")).astype(np.int8)
    depth = np.cumsum(steps, dtype=np.int32)
    if depth.min() < 0 or depth[-1] != 0:
        return None  # unbalanced brackets: not JSON, the general parser says where
    lists_per_level = np.bincount(depth[opens], minlength=rank + 2)
    if lists_per_level[1] != 1:
        return None
    shape = []
    for level in range(1, rank + 1):
        children = lists_per_level[level + 1] if level < rank else starts.size
        if children % lists_per_level[level]:
            return None
        shape.append(int(children // lists_per_level[level]))
        if shape[-1] == 0 and level < rank:
            return None  # an empty list above the innermost level: let the general path judge
    shape_t = tuple(shape)
    expected = dense_skeleton(shape_t)
    if tokens.size != len(expected) or tokens.tobytes() != expected:
        return None
    if check_shape is not None:
        check_shape(shape_t)  # rank, dimensions and element count, before the values exist
    values = np.zeros(starts.size, dtype=np.int64)
    scale = 1
    for k in range(int(lengths.max()) if starts.size else 0):  # k-th digit from the right
        positions = np.maximum(ends - 1 - k, 0)
        digits = buf.take(positions).astype(np.int64) - ord("0")
        values += np.where(lengths > k, digits, 0) * scale
        scale *= 10
    return values.reshape(shape_t), shape_t


def parse_dense_integer_request(
    body: bytes, signature_for: Callable[[str], SignatureSpec], limits: JsonLimits
) -> PredictRequest | None:
    """The common large request, `{"instances": <dense integer array>}` (or "inputs", with an
    optional simple "signature_name") for a single numeric input, without json.loads."""
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
    try:
        signature = signature_for(signature_name)
    except ServingError:
        return None  # the general path reports it, after any JSON error, in TF Serving's order
    if len(signature.inputs) != 1:
        return None
    name, spec = next(iter(signature.inputs.items()))
    if spec.dtype in (DT_STRING, DT_BOOL) or spec.numpy_dtype.kind not in "iuf":
        return None
    row = head.group("key") == b"instances"

    def check_shape(shape: tuple[int, ...]) -> None:
        if row and shape[0] == 0:
            raise invalid_argument("No values in 'instances' array")
        check_against_spec(name, shape, spec.dtype, spec, max_elements=limits.max_elements,
                           max_rows=limits.max_rows, budget=limits.budget())

    parsed = parse_dense_integer_array(
        body[head.end() - 1:tail.start() + 1], max_rank=limits.max_depth - 1, check_shape=check_shape
    )
    if parsed is None:
        return None
    array, _ = parsed
    return PredictRequest(signature_name, {name: _checked_integers(name, array, spec)}, row)


def _checked_integers(name: str, raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    target = spec.numpy_dtype
    if target.kind in "iu" and raw.size:
        info = np.iinfo(target)
        low, high = raw.min(), raw.max()
        if low < info.min or high > info.max:
            offender = low if low < info.min else high
            raise invalid_argument(
                f"input '{name}': value {int(offender)} is out of range for {spec.dtype_name} "
                f"({info.min}..{info.max})"
            )
    return raw.astype(target, copy=False)


# --------------------------------------------------------------------------- predict response


def _nest(flat: list, shape: tuple[int, ...]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def to_json_value(name: str, array: np.ndarray) -> Any:
    """numpy → JSON-ready nested lists, written as TF Serving writes them: float32 in its
    shortest round-tripping decimal, `*_bytes` string tensors as {"b64": ...}."""
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind == "f":
        if array.dtype.itemsize < 8:
            # numpy's str() of float32 is the shortest decimal that round-trips as float32.
            return array.astype(str).astype(np.float64).tolist()
        return array.tolist()
    if kind in "iub":
        return array.tolist()
    if kind in "OSU":
        flat = array.ravel().tolist()
        values: list[Any]
        if name.endswith(BYTES_SUFFIX):
            values = [{B64_KEY: base64.b64encode(_as_bytes(v)).decode("ascii")} for v in flat]
        else:
            values = [_as_bytes(v).decode("utf-8", errors="replace") for v in flat]
        return _nest(values, array.shape)
    raise invalid_argument(f"Failed to write JSON value for tensor type: {array.dtype}")


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def _row_batch_size(outputs: Mapping[str, Any], names: list[str]) -> int:
    """The common first dimension of every output (row format needs one), TF Serving's errors otherwise."""
    batch: int | None = None
    for n in names:
        arr = np.asarray(outputs[n])
        if arr.ndim == 0:
            raise invalid_argument(f"Tensor name: {n} has no shape information ")
        if batch is not None and arr.shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {n} has inconsistent batch size: {arr.shape[0]} expecting: {batch}"
            )
        batch = int(arr.shape[0])
    return batch or 0


def predict_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict:
    """{"predictions": ...} (row) or {"outputs": ...} (columnar); a dict per item or per name
    only when the signature has several outputs."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return {"outputs": to_json_value(names[0], outputs[names[0]])}
        return {"outputs": {n: to_json_value(n, outputs[n]) for n in names}}
    batch = _row_batch_size(outputs, names)
    columns = {n: to_json_value(n, outputs[n]) for n in names}
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {"predictions": [{n: columns[n][i] for n in names} for i in range(batch or 0)]}


# --------------------------------------------------------------------------- client side


def predict_request_document(signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict:
    """A predict request in columnar form; a single input as a plain value (TF Serving takes
    either), which Ingot's server parses without json.loads when it is a dense integer array."""
    columns = {name: request_json_value(np.asarray(value)) for name, value in inputs.items()}
    return {
        "signature_name": signature_name,
        "inputs": next(iter(columns.values())) if len(columns) == 1 else columns,
    }


def request_json_value(array: np.ndarray) -> Any:
    """Bytes as {"b64": ...} (TF Serving's binary form), text as strings, numbers as numbers."""
    if array.dtype.kind in "OSU":
        flat: list[Any] = [
            {B64_KEY: base64.b64encode(v).decode("ascii")} if isinstance(v, bytes) else str(v)
            for v in array.ravel().tolist()
        ]
        return _nest(flat, array.shape)
    return array.tolist()


def array_from_json(name: str, value: Any) -> np.ndarray:
    """One output of a predict answer → numpy: {"b64": ...} leaves as bytes, text as str (an
    object array), numbers as numbers."""

    def leaf(v: Any) -> Any:
        if isinstance(v, dict) and B64_KEY in v:
            return base64.b64decode(v[B64_KEY])
        return v

    if name.endswith(BYTES_SUFFIX) or _has_strings(value):
        flat: list = []
        shape = _walk(value, flat, leaf)
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(shape)
    return np.asarray(value)


def _has_strings(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (str, dict))


def _walk(value: Any, out: list, leaf: Callable[[Any], Any]) -> tuple[int, ...]:
    if isinstance(value, list):
        shapes = [_walk(v, out, leaf) for v in value]
        return (len(value), *(shapes[0] if shapes else ()))
    out.append(leaf(value))
    return ()


# orjson writes these dtypes itself (OPT_SERIALIZE_NUMPY), float32 in its shortest round-tripping
# decimal as TF Serving does; anything else takes to_json_value.
_ORJSON_KINDS = "iub"
_ORJSON_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _orjson_value(name: str, array: np.ndarray) -> Any:
    array = np.asarray(array)
    if array.dtype.kind in _ORJSON_KINDS or array.dtype in _ORJSON_FLOATS:
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return None  # NaN/Infinity: orjson would write null; the caller falls back
        return np.ascontiguousarray(array.astype(array.dtype.newbyteorder("="), copy=False))
    return to_json_value(name, array)


def dumps_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    """`dumps(predict_response(...))` with orjson writing the numeric arrays straight from numpy
    (measured in benchmarks/bench_rest_codec.py). The same JSON values; a small float may be
    written without an exponent (0.000012 for 1.2e-05). Non-finite floats take the standard path
    (TF Serving writes NaN)."""
    import orjson

    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    columns = {n: _orjson_value(n, outputs[n]) for n in names}
    if any(v is None for v in columns.values()):
        return dumps(predict_response(outputs, row_format))
    if not row_format:
        document: Any = {"outputs": columns[names[0]] if len(names) == 1 else columns}
    else:
        batch = _row_batch_size(outputs, names)
        if len(names) == 1:
            document = {"predictions": columns[names[0]]}
        else:
            document = {"predictions": [{n: columns[n][i] for n in names} for i in range(batch or 0)]}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def dumps_request(signature_name: str, inputs: Mapping[str, np.ndarray]) -> bytes:
    """`dumps(predict_request_document(...))` with orjson writing numeric inputs from numpy."""
    import orjson

    columns = {}
    for name, value in inputs.items():
        array = np.asarray(value)
        if array.dtype.kind in _ORJSON_KINDS or (array.dtype in _ORJSON_FLOATS and np.isfinite(array).all()):
            columns[name] = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("="), copy=False))
        else:
            columns[name] = request_json_value(array)
    document = {"signature_name": signature_name,
                "inputs": next(iter(columns.values())) if len(columns) == 1 else columns}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=True).encode("utf-8")


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode("utf-8")

