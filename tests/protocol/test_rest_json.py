"""TF Serving's REST JSON (util/json_tensor.cc semantics): request parsing and validation,
response shaping. Pure functions, no server."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from ingot.protocol.rest.request import JsonLimits, parse_predict_request
from ingot.protocol.rest.response import predict_response, to_json_value
from ingot.protocol.rest.text import json_nesting_depth
from ingot.protocol.status import Code, ServingError
from ingot.protocol.tensors import DT_FLOAT, DT_INT64, DT_STRING, DT_UINT8, SignatureSpec, TensorSpec

IMAGES = SignatureSpec(
    "serving_default",
    {"images": TensorSpec(DT_UINT8, (None, 2, 2, 3))},
    {"probabilities": TensorSpec(DT_FLOAT, (None, 3)), "class_ids": TensorSpec(DT_INT64, (None,))},
)
BYTES = SignatureSpec("serving_bytes", {"image_bytes": TensorSpec(DT_STRING, (None,))}, IMAGES.outputs)
TWO_INPUTS = SignatureSpec(
    "pair", {"a": TensorSpec(DT_FLOAT, (None, 2)), "b": TensorSpec(DT_STRING, (None,))}, IMAGES.outputs
)
SIGNATURES = {"": IMAGES, "serving_default": IMAGES, "serving_bytes": BYTES, "pair": TWO_INPUTS}


def lookup(name: str) -> SignatureSpec:
    if name not in SIGNATURES:
        raise ServingError(Code.INVALID_ARGUMENT, f'Serving signature name: "{name}" not found in signature def')
    return SIGNATURES[name]


def parse(document, limits=JsonLimits()):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_predict_request(body, lookup, limits)


def image(value=7):
    return np.full((2, 2, 3), value, dtype=np.int64).tolist()


def test_row_format_builds_one_batched_tensor():
    request = parse({"instances": [image(1), image(2), image(3)]})
    assert request.row_format and request.signature_name == ""
    images = request.inputs["images"]
    assert images.dtype == np.uint8 and images.shape == (3, 2, 2, 3)
    assert images[:, 0, 0, 0].tolist() == [1, 2, 3]


def test_columnar_format_and_named_inputs():
    request = parse({"inputs": [image(5)]})
    assert not request.row_format and request.inputs["images"].shape == (1, 2, 2, 3)
    named = parse({"inputs": {"images": [image(6)]}})
    assert named.inputs["images"][0, 0, 0, 0] == 6


def test_b64_strings_and_signature_name():
    payload = b"\x89PNG\x00binary"
    request = parse({"signature_name": "serving_bytes",
                     "instances": [{"b64": base64.b64encode(payload).decode()}, {"b64": "aGk"}]})
    assert request.inputs["image_bytes"].tolist() == [payload, b"hi"]  # missing padding is accepted


def test_row_format_with_several_inputs_needs_objects():
    request = parse({"signature_name": "pair", "instances": [{"a": [1, 2], "b": "x"}, {"a": [3.5, 4], "b": {"b64": "eQ=="}}]})
    assert request.inputs["a"].dtype == np.float32 and request.inputs["a"].tolist() == [[1, 2], [3.5, 4]]
    assert request.inputs["b"].tolist() == [b"x", b"y"]
    with pytest.raises(ServingError, match="expecting list of objects as multiple input tensors"):
        parse({"signature_name": "pair", "instances": [[1, 2]]})
    with pytest.raises(ServingError, match="keys must be equal to: a,b"):
        parse({"signature_name": "pair", "instances": [{"a": [1, 2]}]})
    with pytest.raises(ServingError, match="Missing named input: b in 'inputs' object."):
        parse({"signature_name": "pair", "inputs": {"a": [[1, 2]]}})


@pytest.mark.parametrize(
    "document, fragment",
    [
        (b"", "The document is empty"),
        (b"{not json", "JSON Parse error"),
        (b"\xff\xfe{}", "JSON Parse error"),
        ([1, 2], "Is not object"),
        ({"signature_name": 5, "instances": [1]}, "'signature_name' key must be a string value"),
        ({"signature_name": "nope", "instances": [1]}, 'Serving signature name: "nope" not found'),
        ({"instances": [image()], "inputs": [image()]}, "only one of 'inputs' or 'instances'"),
        ({"instances": {"images": 1}}, "Expecting 'instances' to be an list/array"),
        ({"instances": []}, "No values in 'instances' array"),
        ({"foo": 1}, "Missing 'inputs' or 'instances' key"),
        ({"instances": [[[1, 2, 3]]]}, "has rank 3"),
        ({"instances": [np.zeros((3, 2, 3), int).tolist()]}, "has shape \\[1,3,2,3\\]"),
        ({"instances": [image(300)]}, "value 300 is out of range for uint8"),
        ({"instances": [image(-1)]}, "out of range for uint8"),
        ({"instances": [np.full((2, 2, 3), 1.5).tolist()]}, "is not of expected type: uint8"),
        ({"instances": [np.full((2, 2, 3), "a").tolist()]}, "Type: String is not of expected type: uint8"),
        ({"instances": [np.full((2, 2, 3), True).tolist()]}, "Bool is not of expected type: uint8"),
        ({"instances": [image(), [[[1, 2, 3], [1, 2, 3]], [[1, 2, 3]]]]}, "not a dense tensor"),
        ({"signature_name": "serving_bytes", "instances": [{"b64": "!!not base64!!"}]}, "Unable to base64 decode"),
        ({"signature_name": "serving_bytes", "instances": [{"b64": "aGk=", "x": 1}]}, "keys must be equal to: image_bytes"),
        ({"signature_name": "serving_bytes", "instances": [{"b64": "aGk="}, {"b64": "aGk=", "x": 1}]}, "Expecting value/list but got object at item 1"),
        ({"signature_name": "serving_bytes", "instances": [5]}, "Type: Number is not of expected type: string"),
        ({"signature_name": "serving_bytes", "inputs": [["a"]]}, "rank 2"),
    ],
)
def test_bad_bodies_give_invalid_argument_naming_the_problem(document, fragment):
    with pytest.raises(ServingError, match=fragment) as info:
        parse(document)
    assert info.value.code == Code.INVALID_ARGUMENT and info.value.http_status == 400


def test_nesting_depth_is_checked_before_parsing_and_ignores_brackets_in_strings():
    assert json_nesting_depth(b'{"a": [[1], [2]]}') == 3
    assert json_nesting_depth(b'{"s": "[[[[[[\\"[[["}') == 1
    assert json_nesting_depth(b'{"s": "\\\\", "t": [1]}') == 2
    deep = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(ServingError, match="nesting depth 100001 exceeds the limit of 32"):
        parse(deep)


def test_element_count_is_checked_against_the_limit_before_building():
    limits = JsonLimits(max_elements=3 * 12 - 1)
    with pytest.raises(ServingError, match="36 elements .* more than the server's limit of 35"):
        parse({"instances": [image()] * 3}, limits)
    assert parse({"instances": [image()] * 2}, limits).batch_size == 2


def test_response_shapes_match_tf_serving():
    outputs = {
        "probabilities": np.array([[0.1, 0.2, 0.7], [1.0, 0.0, 0.0]], np.float32),
        "class_ids": np.array([2, 0], np.int64),
        "class_names": np.array([b"tulip", b"rose"], dtype=object),
    }
    row = predict_response(outputs, row_format=True)
    assert row == {"predictions": [
        {"class_ids": 2, "class_names": "tulip", "probabilities": [0.1, 0.2, 0.7]},
        {"class_ids": 0, "class_names": "rose", "probabilities": [1.0, 0.0, 0.0]},
    ]}
    columnar = predict_response(outputs, row_format=False)
    assert columnar["outputs"]["class_names"] == ["tulip", "rose"]
    single = {"scores": np.array([[0.5], [0.25]], np.float32)}
    assert predict_response(single, row_format=True) == {"predictions": [[0.5], [0.25]]}
    assert predict_response(single, row_format=False) == {"outputs": [[0.5], [0.25]]}


def test_float32_is_written_in_its_shortest_form_and_bytes_outputs_as_b64():
    text = json.dumps(to_json_value("p", np.array([0.1, 1 / 3, float("nan")], np.float32)))
    assert text == "[0.1, 0.33333334, NaN]"
    assert to_json_value("thumb_bytes", np.array([b"\x00\xff"], dtype=object)) == [{"b64": "AP8="}]


def test_row_response_errors_on_inconsistent_batches_and_scalars():
    with pytest.raises(ServingError, match="inconsistent batch size"):
        predict_response({"a": np.zeros((2, 1)), "b": np.zeros((3,))}, row_format=True)
    with pytest.raises(ServingError, match="has no shape information"):
        predict_response({"a": np.float32(1)}, row_format=True)


# --------------------------------------------------------------------------- the fast path

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ingot.protocol.rest.fast import parse_dense_integer_array  # noqa: E402


def test_fast_path_reads_dense_integer_arrays_and_declines_everything_else():
    assert parse_dense_integer_array(b"[[1, 20], [300, 0]]")[1] == (2, 2)
    assert parse_dense_integer_array(b"[[1, 20], [300, 0]]")[0].tolist() == [[1, 20], [300, 0]]
    for text in (b"[1,,2]", b"[01]", b"[1 2]", b"[[1],[2,3]]", b"[[1,2],3]", b"[-1]", b"[1.5]",
                 b"[1,2,]", b"[,1]", b"[[1,2]][3]", b'["1"]', b"[1e3]", b"[" + b"9" * 19 + b"]", b"1", b"[[],[1]]",
                 b"[]", b"[1,2]3", b"[[1,2],3[4,5]]", b"[[,1]4,[2,3]]", b"[[1,],3[4,5]]", b"[ ,1]"):
        assert parse_dense_integer_array(text) is None, text


def test_errors_come_in_tf_servings_order_on_either_path():
    with pytest.raises(ServingError, match="JSON Parse error"):  # bad JSON before unknown signature
        parse(b'{"signature_name": "nope", "instances": [1,,2]}')
    with pytest.raises(ServingError, match='signature name: "nope" not found'):
        parse(b'{"signature_name": "nope", "instances": [[1, 2]]}')


def test_fast_and_general_paths_give_the_same_request():
    images = np.random.default_rng(0).integers(0, 256, size=(3, 2, 2, 3))
    for document in ({"instances": images.tolist()}, {"signature_name": "serving_default", "inputs": images.tolist()},
                     {"inputs": images.tolist(), "signature_name": "serving_default"}):
        body = json.dumps(document).encode()
        fast = parse_predict_request(body, lookup)
        general = parse_predict_request(body, lookup, fast_path=False)
        assert (fast.signature_name, fast.row_format) == (general.signature_name, general.row_format)
        np.testing.assert_array_equal(fast.inputs["images"], general.inputs["images"])
        assert fast.inputs["images"].dtype == general.inputs["images"].dtype == np.uint8


nested_ints = st.recursive(
    st.integers(min_value=0, max_value=400),
    lambda children: st.lists(children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=st.lists(nested_ints, max_size=4), indent=st.sampled_from([None, 0, 2]),
       separators=st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]))
def test_fast_path_agrees_with_json_on_any_nesting(value, indent, separators):
    text = json.dumps(value, indent=indent, separators=separators).encode()
    fast = parse_dense_integer_array(text)
    if fast is None:
        return
    array, shape = fast
    reference = np.asarray(json.loads(text))
    assert reference.dtype.kind in "iu" or reference.size == 0
    assert reference.shape == shape
    np.testing.assert_array_equal(array, reference)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text(alphabet="[],0123 \n-.", max_size=40))
def test_fast_path_accepts_only_valid_json(text):
    fast = parse_dense_integer_array(text.encode())
    if fast is None:
        return
    reference = np.asarray(json.loads(text))  # must parse: the fast path accepted it
    assert reference.shape == fast[1]
    np.testing.assert_array_equal(fast[0], reference)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(pixels=st.lists(st.integers(-2, 300), min_size=12, max_size=12), n=st.integers(0, 3),
       key=st.sampled_from(["instances", "inputs"]))
def test_fast_and_general_paths_raise_the_same_errors(pixels, n, key):
    body = json.dumps({key: [np.reshape(pixels, (2, 2, 3)).tolist()] * n}).encode()
    outcomes = []
    for fast_path in (True, False):
        try:
            outcomes.append(parse_predict_request(body, lookup, fast_path=fast_path).inputs["images"].tolist())
        except ServingError as err:
            outcomes.append(err.message)
    assert outcomes[0] == outcomes[1]
