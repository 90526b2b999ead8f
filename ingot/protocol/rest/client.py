"""The client side of REST JSON: predict requests out, predict answers in. Used by the Python
client, the gateway (to log what its upstreams answered) and the loop's traffic."""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from ingot.protocol.rest.values import B64_KEY, BYTES_SUFFIX, nest, orjson_array


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
        return nest(flat, array.shape)
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




def dumps_request(signature_name: str, inputs: Mapping[str, np.ndarray]) -> bytes:
    """`dumps(predict_request_document(...))` with orjson writing numeric inputs from numpy."""
    import orjson

    columns = {}
    for name, value in inputs.items():
        array = np.asarray(value)
        ready = orjson_array(array)
        columns[name] = ready if ready is not None else request_json_value(array)
    document = {"signature_name": signature_name,
                "inputs": next(iter(columns.values())) if len(columns) == 1 else columns}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def predict_outputs(document: Any, single_name: Callable[[], str],
                    names: Collection[str] | None = None) -> dict[str, np.ndarray] | None:
    """The outputs of a predict answer, row form (`predictions`) or columnar (`outputs`), by
    name; an answer with one unnamed output names it `single_name()`. `names` keeps only those.
    None when the document is no predict answer."""
    if not isinstance(document, dict):
        return None
    if "predictions" in document:
        rows = document["predictions"]
        if not isinstance(rows, list) or not rows:
            return None
        if isinstance(rows[0], dict):
            return {name: array_from_json(name, [row.get(name) for row in rows])
                    for name in rows[0] if names is None or name in names}
        columns: Any = {single_name(): rows}
    else:
        columns = document.get("outputs")
        if columns is None:
            return None
        if not isinstance(columns, dict):
            columns = {single_name(): columns}
    return {name: array_from_json(name, value) for name, value in columns.items()
            if names is None or name in names}
