"""Tensors on the wire: TensorProto ⇄ numpy, and the signatures requests are checked against.

Conversion is plain numpy over the proto's fields (no TensorFlow call), so a uint8 image batch in
`tensor_content` becomes an array without a copy per element; every size is checked against the
signature and the element limit before an array is allocated, so a tiny request cannot claim a
huge tensor.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingot.protocol.signatures import PREDICT_METHOD, SERVING_DEFAULT
from ingot.protocol.status import Code, ServingError, invalid_argument

# tensorflow/core/framework/types.proto
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_UINT16, DT_HALF, DT_UINT32, DT_UINT64 = 9, 10, 17, 19, 22, 23

# enum → (numpy dtype, TF's DataTypeString name, TensorProto value field)
DTYPES: dict[int, tuple[np.dtype, str, str]] = {
    DT_FLOAT: (np.dtype(np.float32), "float", "float_val"),
    DT_DOUBLE: (np.dtype(np.float64), "double", "double_val"),
    DT_INT32: (np.dtype(np.int32), "int32", "int_val"),
    DT_UINT8: (np.dtype(np.uint8), "uint8", "int_val"),
    DT_INT16: (np.dtype(np.int16), "int16", "int_val"),
    DT_INT8: (np.dtype(np.int8), "int8", "int_val"),
    DT_UINT16: (np.dtype(np.uint16), "uint16", "int_val"),
    DT_STRING: (np.dtype(object), "string", "string_val"),
    DT_INT64: (np.dtype(np.int64), "int64", "int64_val"),
    DT_BOOL: (np.dtype(np.bool_), "bool", "bool_val"),
    DT_HALF: (np.dtype(np.float16), "half", "half_val"),
    DT_UINT32: (np.dtype(np.uint32), "uint32", "uint32_val"),
    DT_UINT64: (np.dtype(np.uint64), "uint64", "uint64_val"),
}
_ENUM_BY_NUMPY = {np.dtype(v[0]).str: k for k, v in DTYPES.items() if k != DT_STRING}


def dtype_name(dtype_enum: int) -> str:
    entry = DTYPES.get(dtype_enum)
    return entry[1] if entry else f"DataType({dtype_enum})"


def dtype_enum_of(array: np.ndarray) -> int:
    if array.dtype.kind in ("O", "S", "U"):
        return DT_STRING
    try:
        return _ENUM_BY_NUMPY[array.dtype.str]
    except KeyError:
        raise ServingError(Code.UNIMPLEMENTED, f"tensors of numpy dtype {array.dtype} are not supported") from None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature: dtype and shape (None = any size, shape None = any rank)."""

    dtype: int
    shape: tuple[int | None, ...] | None

    @property
    def numpy_dtype(self) -> np.dtype:
        return DTYPES[self.dtype][0]

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype)

    def shape_text(self) -> str:
        if self.shape is None:
            return "[?]"
        return "[" + ",".join("-1" if d is None else str(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class SignatureSpec:
    name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    method_name: str = PREDICT_METHOD

    @property
    def batched(self) -> bool:
        """Every input has a leading (batch) dimension, so requests can be merged."""
        return all(spec.shape is not None and len(spec.shape) >= 1 for spec in self.inputs.values())


def find_signature(signatures: Mapping[str, SignatureSpec], name: str, *, rest: bool = False) -> SignatureSpec:
    """Signature by name ("" = serving_default), with TF Serving's error for each API:
    INVALID_ARGUMENT over REST, FAILED_PRECONDITION over gRPC."""
    key = name or SERVING_DEFAULT
    spec = signatures.get(key)
    if spec is None:
        if rest:
            raise invalid_argument(f'Serving signature name: "{key}" not found in signature def')
        raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.')
    return spec


def spec_from_tensor_info(info: Any) -> TensorSpec:
    """A SignatureDef TensorInfo (tensorflow.core.protobuf.meta_graph_pb2) → TensorSpec."""
    shape_proto = info.tensor_shape
    if shape_proto.unknown_rank:
        shape = None
    else:
        shape = tuple(None if d.size < 0 else int(d.size) for d in shape_proto.dim)
    return TensorSpec(dtype=int(info.dtype), shape=shape)


def signature_from_def(name: str, signature_def: Any) -> SignatureSpec:
    return SignatureSpec(
        name=name,
        inputs={k: spec_from_tensor_info(v) for k, v in sorted(signature_def.inputs.items())},
        outputs={k: spec_from_tensor_info(v) for k, v in sorted(signature_def.outputs.items())},
        method_name=signature_def.method_name,
    )


STRING_OVERHEAD_BYTES = 32  # what one string element costs in a tensor besides its bytes


@dataclass(frozen=True)
class TensorLimits:
    """What one request's inputs may cost once decoded, checked before anything is expanded: a
    TensorProto may carry fewer values than its shape declares (the last one is repeated), so a
    tiny message can claim a huge tensor."""

    max_elements: int = 1 << 24  # per input tensor
    max_bytes: int = 128 << 20  # all inputs of one request, decoded (strings: count x length)
    max_rows: int | None = None  # the batch (first) dimension of a batched input


class DecodeBudget:
    """The bytes one request's inputs take once decoded, charged input by input before each is
    built, so the request is refused at the first input that would go over the limit."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0

    def charge(self, name: str, nbytes: int) -> None:
        self.used += nbytes
        if self.used > self.max_bytes:
            raise invalid_argument(
                f"input '{name}': the request's inputs take {self.used} bytes once decoded, more than "
                f"the server's limit of {self.max_bytes} bytes per request (max_decoded_bytes)"
            )


def string_tensor_bytes(lengths_total: int, count: int) -> int:
    """What a string tensor of `count` elements holding `lengths_total` bytes costs."""
    return lengths_total + count * STRING_OVERHEAD_BYTES


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def check_against_spec(name: str, shape: tuple[int, ...], dtype: int, spec: TensorSpec, *, max_elements: int,
                       max_rows: int | None = None, budget: DecodeBudget | None = None) -> None:
    """Reject a tensor whose dtype, rank, fixed dimensions, rows or element count do not fit, and
    charge a numeric tensor's bytes to the request's budget, before any array of that size exists
    (string tensors are charged by the caller, which knows their lengths)."""
    if dtype != spec.dtype:
        raise invalid_argument(
            f"input '{name}' has dtype {dtype_name(dtype)}; the signature expects {spec.dtype_name}"
        )
    if spec.shape is not None:
        if len(shape) != len(spec.shape):
            raise invalid_argument(
                f"input '{name}' has rank {len(shape)} (shape {_shape_text(shape)}); the signature "
                f"expects rank {len(spec.shape)} with shape {spec.shape_text()}"
            )
        for got, want in zip(shape, spec.shape):
            if want is not None and got != want:
                raise invalid_argument(
                    f"input '{name}' has shape {_shape_text(shape)}; the signature expects "
                    f"{spec.shape_text()} ({spec.dtype_name})"
                )
    if any(d < 0 for d in shape):
        raise invalid_argument(f"input '{name}' has a negative dimension in shape {_shape_text(shape)}")
    count = math.prod(shape)
    if count > max_elements:
        raise invalid_argument(
            f"input '{name}' has {count} elements (shape {_shape_text(shape)}), more than the "
            f"server's limit of {max_elements} (max_tensor_elements)"
        )
    if max_rows is not None and spec.shape and spec.shape[0] is None and shape and shape[0] > max_rows:
        raise invalid_argument(
            f"input '{name}' has {shape[0]} rows (shape {_shape_text(shape)}), more than the server's "
            f"limit of {max_rows} per request (max_batch_rows); send smaller batches"
        )
    if budget is not None and dtype != DT_STRING:
        budget.charge(name, count * spec.numpy_dtype.itemsize)


def check_input_names(spec: SignatureSpec, inputs: Mapping[str, Any]) -> None:
    """The inputs sent must be exactly the signature's (TF Serving's message), before any conversion."""
    if set(inputs) == set(spec.inputs):
        return
    sent, wanted = set(inputs), set(spec.inputs)
    raise invalid_argument(
        f"input size does not match signature: {len(sent)}!={len(wanted)} len({{{','.join(sorted(sent))}}}) "
        f"!= len({{{','.join(sorted(wanted))}}}). Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
        f"Missing but required: {{{','.join(sorted(wanted - sent))}}}."
    )


def array_from_proto(name: str, proto: Any, spec: TensorSpec | None, *, max_elements: int,
                     max_rows: int | None = None, budget: DecodeBudget | None = None,
                     content: Any = None) -> np.ndarray:
    """TensorProto → numpy, validated against `spec` (when given) and charged to `budget` before
    allocation: a short value list repeated to fill its shape is costed as expanded. `content` is
    the tensor_content when it was kept out of the proto (ingot.protocol.predict_wire): the array
    then reads those bytes in place."""
    entry = DTYPES.get(proto.dtype)
    if entry is None:
        raise invalid_argument(f"input '{name}' has unsupported dtype {dtype_name(proto.dtype)}")
    np_dtype, _, field = entry
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument(f"input '{name}' has no shape (unknown rank)")
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if spec is not None:
        check_against_spec(name, shape, proto.dtype, spec, max_elements=max_elements, max_rows=max_rows,
                           budget=budget)
    elif any(d < 0 for d in shape) or math.prod(shape) > max_elements:
        raise invalid_argument(f"input '{name}' has invalid or too large shape {_shape_text(shape)}")
    count = math.prod(shape)

    # Read once: each read of a bytes field makes a new copy of it.
    tensor_content = content if content is not None else proto.tensor_content
    if len(tensor_content):
        if proto.dtype == DT_STRING:
            raise invalid_argument(f"input '{name}': string tensors cannot use tensor_content")
        expected = count * np_dtype.itemsize
        if len(tensor_content) != expected:
            raise invalid_argument(
                f"input '{name}': tensor_content has {len(tensor_content)} bytes; shape "
                f"{_shape_text(shape)} of {dtype_name(proto.dtype)} needs {expected}"
            )
        return np.frombuffer(tensor_content, dtype=np_dtype).reshape(shape)
    del tensor_content

    values = getattr(proto, field)
    n = len(values)
    if n != count and not (n == 1 and count > 1):
        raise invalid_argument(
            f"input '{name}': {n} values in {field} do not fill shape {_shape_text(shape)} "
            f"({count} elements)"
        )
    if proto.dtype == DT_STRING:
        if budget is not None:
            total = sum(map(len, values)) if n == count else count * len(values[0]) if n else 0
            budget.charge(name, string_tensor_bytes(total, count))
        flat = np.empty(n, dtype=object)
        flat[:] = list(values)
    elif proto.dtype == DT_HALF:
        flat = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        try:
            raw = _repeated_values(values, field, np_dtype)
            if np_dtype.kind in "iu" and raw.size and (raw.min() < np.iinfo(np_dtype).min or raw.max() > np.iinfo(np_dtype).max):
                raise invalid_argument(
                    f"input '{name}': values out of range for {dtype_name(proto.dtype)}"
                )
            flat = raw.astype(np_dtype, copy=False)
        except (OverflowError, ValueError) as err:
            raise invalid_argument(f"input '{name}': {err}") from None
    if n == 1 and count > 1:
        return np.full(shape, flat[0], dtype=np_dtype)
    return flat.reshape(shape)


def outputs_from_proto(outputs: Mapping[str, Any], *, max_elements: int,
                       names: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """A PredictResponse's `outputs` map → numpy arrays by name (only `names`, when given)."""
    return {name: array_from_proto(name, proto, None, max_elements=max_elements)
            for name, proto in outputs.items() if names is None or name in names}


# Repeated fields are converted in slices: each slice is one C call, so a thread converting a
# long value list lets the event loop in between (one np.asarray over millions would hold the
# GIL for seconds).
VALUE_CHUNK = 1 << 16
_FIELD_DTYPES = {"int_val": np.int64, "int64_val": np.int64, "uint32_val": np.int64,
                 "uint64_val": np.uint64, "double_val": np.float64, "bool_val": np.bool_}


def _repeated_values(values: Any, field: str, target: np.dtype) -> np.ndarray:
    raw = np.empty(len(values), dtype=_FIELD_DTYPES.get(field, target))
    for start in range(0, len(values), VALUE_CHUNK):
        raw[start:start + VALUE_CHUNK] = values[start:start + VALUE_CHUNK]
    return raw


def repeated_value_count(proto: Any) -> int:
    """How many values a TensorProto carries in its repeated fields (the conversion's cost)."""
    entry = DTYPES.get(proto.dtype)
    return len(getattr(proto, entry[2])) if entry is not None else 0


def array_to_proto(array: np.ndarray, proto: Any) -> Any:
    """Fill a (fresh) TensorProto from numpy: numbers as little-endian tensor_content, strings as
    string_val — what tf.make_tensor_proto produces, without TensorFlow."""
    array = np.asarray(array)
    dtype_enum = dtype_enum_of(array)
    proto.dtype = dtype_enum
    dims = proto.tensor_shape.dim
    for d in array.shape:
        dims.add().size = int(d)
    if dtype_enum == DT_STRING:
        proto.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel().tolist()
        )
    else:
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto
