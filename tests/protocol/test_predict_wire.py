"""ingot.protocol.predict_wire: the same PredictRequest protobuf parses, with each input's
tensor_content left in the received buffer instead of copied."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from ingot.protocol.predict_wire import LeanPredictRequest, parse_predict_request
from ingot.protocol.tensors import array_from_proto, array_to_proto


def predict_request():
    from tensorflow_serving.apis import predict_pb2

    return predict_pb2.PredictRequest


def rebuilt(result):
    """The full message again: contents put back into the stripped inputs."""
    if not isinstance(result, LeanPredictRequest):
        return result
    message = type(result.message)()
    message.CopyFrom(result.message)
    for name, content in result.contents.items():
        message.inputs[name].tensor_content = bytes(content)
    return message


def build(inputs: dict, *, name="m", output_filter=(), client_id=b""):
    request = predict_request()()
    request.model_spec.name = name
    request.model_spec.version.value = 3
    request.output_filter.extend(output_filter)
    if client_id:
        request.client_id = client_id
    for key, array in inputs.items():
        array_to_proto(np.asarray(array), request.inputs[key])
    return request


def test_tensor_content_is_read_in_place_and_the_rest_parses_as_protobuf_does():
    images = np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, 32, 32, 3)
    request = build({"images": images, "names": np.array([b"a", b"b"], dtype=object),
                     "small": np.ones((2, 3), np.float32)}, output_filter=["probabilities"], client_id=b"c1")
    data = request.SerializeToString()
    result = parse_predict_request(data, predict_request())
    assert isinstance(result, LeanPredictRequest)
    assert set(result.contents) == {"images"}  # string values and a 24-byte content stay in the message
    assert result.message.inputs["images"].tensor_content == b""
    assert rebuilt(result) == request
    array = array_from_proto("images", result.message.inputs["images"], None, max_elements=1 << 20,
                             content=result.contents["images"])
    np.testing.assert_array_equal(array, images)
    assert np.shares_memory(array, np.frombuffer(data, np.uint8))  # no copy of the pixels


def test_requests_without_large_tensor_content_are_plain_protobuf():
    request = build({"x": np.ones((2, 2), np.float32)})
    result = parse_predict_request(request.SerializeToString(), predict_request())
    assert not isinstance(result, LeanPredictRequest)
    assert result == request


def test_a_repeated_input_key_falls_back_to_protobuf_which_keeps_the_last():
    first = build({"images": np.zeros((1, 64, 64, 3), np.uint8)}).SerializeToString()
    second = build({"images": np.ones((1, 2), np.float32)}).SerializeToString()
    data = first + second  # concatenated messages merge: the map keeps the last entry
    result = parse_predict_request(data, predict_request())
    assert result == predict_request().FromString(data)


@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff", b"\x12\x05\x0a\x01", b"\x12\x80\x80\x80\x80\x10"])
def test_malformed_bytes_raise_what_protobuf_raises(data):
    with pytest.raises(DecodeError):
        predict_request().FromString(data)
    with pytest.raises(DecodeError):
        parse_predict_request(data, predict_request())


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.integers(0, 40), min_size=1, max_size=4),
       dtype=st.sampled_from([np.uint8, np.float32, np.int64]),
       keys=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3, unique=True),
       cut=st.integers(0, 4000))
def test_any_request_parses_to_what_protobuf_parses(shape, dtype, keys, cut):
    inputs = {k: np.full(shape, i + 1, dtype) for i, k in enumerate(keys)}
    data = build(inputs, output_filter=keys).SerializeToString()
    assert rebuilt(parse_predict_request(data, predict_request())) == predict_request().FromString(data)
    truncated = data[:cut]  # cut anywhere: the same answer or the same error as protobuf
    try:
        expected = predict_request().FromString(truncated)
    except DecodeError:
        with pytest.raises(DecodeError):
            parse_predict_request(truncated, predict_request())
    else:
        assert rebuilt(parse_predict_request(truncated, predict_request())) == expected
