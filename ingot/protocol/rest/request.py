"""A REST predict request body → numpy inputs checked against the signature (server side).

Pure functions: the HTTP handler hands over the raw body and gets numpy inputs back, or a
`ServingError` whose message says what was wrong and what was expected. The checks run in the
order that keeps a hostile body cheap: size (the HTTP layer), nesting depth (a vectorized scan
before parsing), JSON syntax, then per input the claimed shape and element count against the
signature before any array is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingot.protocol.rest.fast import dense_request_parts, parse_dense_integer_array
from ingot.protocol.rest.text import parse_json_object
from ingot.protocol.rest.values import debug, decode_b64, is_b64_object, json_type
from ingot.protocol.status import ServingError, invalid_argument
from ingot.protocol.tensors import (
    DT_BOOL,
    DT_STRING,
    DecodeBudget,
    SignatureSpec,
    TensorSpec,
    check_against_spec,
    string_tensor_bytes,
)


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
    doc = parse_json_object(body, limits.max_depth)
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument(
            f"JSON Value: {debug(doc)} not formatted correctly. 'signature_name' key must be a string value."
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
                f"{debug(item, 128)} keys must be equal to: {','.join(sorted(expected))}"
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
                f"JSON Value: {debug(value, 64)} not formatted correctly for base64 data "
                "(expected {\"b64\": \"<base64 string>\"})"
            )
        else:
            raise invalid_argument(
                f"JSON Value: {debug(value, 64)} Type: {json_type(value)} is not of expected type: "
                f"string (input '{name}')"
            )
        return
    if not isinstance(value, list) or len(value) != shape[level]:
        raise _ragged(name, shape, value, level)
    for item in value:
        _collect_strings(name, item, shape, level + 1, out)


def _ragged(name: str, shape: tuple[int, ...], value: Any, level: int) -> Exception:
    got = f"list of size {len(value)}" if isinstance(value, list) else f"{json_type(value)} {debug(value, 64)}"
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
                f"JSON Value: {debug(bad, 64)} Type: {json_type(bad)} is not of expected type: {want} "
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
            f"JSON Value: {debug(bad, 64)} Type: Number is not of expected type: {want} "
            f"(input '{name}' takes integers)"
        )
    return _checked_integers(name, raw, spec)



def parse_dense_integer_request(
    body: bytes, signature_for: Callable[[str], SignatureSpec], limits: JsonLimits
) -> PredictRequest | None:
    """The common large request (ingot.protocol.rest.fast) for a single numeric input, without
    json.loads; None when the general parser has to judge the body."""
    parts = dense_request_parts(body)
    if parts is None:
        return None
    signature_name, row, text = parts
    try:
        signature = signature_for(signature_name)
    except ServingError:
        return None  # the general path reports it, after any JSON error, in TF Serving's order
    if len(signature.inputs) != 1:
        return None
    name, spec = next(iter(signature.inputs.items()))
    if spec.dtype in (DT_STRING, DT_BOOL) or spec.numpy_dtype.kind not in "iuf":
        return None

    def check_shape(shape: tuple[int, ...]) -> None:
        if row and shape[0] == 0:
            raise invalid_argument("No values in 'instances' array")
        check_against_spec(name, shape, spec.dtype, spec, max_elements=limits.max_elements,
                           max_rows=limits.max_rows, budget=limits.budget())

    parsed = parse_dense_integer_array(text, max_rank=limits.max_depth - 1, check_shape=check_shape)
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

