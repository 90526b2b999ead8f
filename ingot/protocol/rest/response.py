"""numpy outputs → a REST predict answer (server side), as TF Serving writes it: row form
`{"predictions": ...}` or columnar `{"outputs": ...}`."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from ingot.protocol.rest.text import dumps
from ingot.protocol.rest.values import B64_KEY, BYTES_SUFFIX, ORJSON_FLOATS, as_bytes, nest, orjson_array
from ingot.protocol.status import invalid_argument


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
            values = [{B64_KEY: base64.b64encode(as_bytes(v)).decode("ascii")} for v in flat]
        else:
            values = [as_bytes(v).decode("utf-8", errors="replace") for v in flat]
        return nest(values, array.shape)
    raise invalid_argument(f"Failed to write JSON value for tensor type: {array.dtype}")



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



def _orjson_value(name: str, array: np.ndarray) -> Any:
    """What orjson writes for one output: the array itself where it can, else the JSON value;
    None for NaN/Infinity (orjson would write null; the caller falls back)."""
    array = np.asarray(array)
    ready = orjson_array(array)
    if ready is not None:
        return ready
    if array.dtype in ORJSON_FLOATS:
        return None
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

