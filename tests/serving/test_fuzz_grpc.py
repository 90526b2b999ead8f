"""Hypothesis fuzzing of gRPC Predict: arbitrary TensorProtos (any dtype number, shapes that
are huge, negative or empty, garbage tensor_content, mismatched value fields) get a client error
code or an answer, never INTERNAL/UNKNOWN, and the server stays up."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingot.serving.config import BatchingOptions, single_model_config
from tests.serving.support import MODEL, grpc_stubs, publish, start_server

pytestmark = pytest.mark.xdist_group("serving-fuzz")

dims = st.lists(st.one_of(st.integers(-2, 20), st.sampled_from([16, 3, 2**31, 2**62])), max_size=5)


@st.composite
def tensor_protos(draw):
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto(dtype=draw(st.sampled_from([0, 1, 2, 3, 4, 7, 9, 10, 14, 19, 23, 99])))
    for d in draw(dims):
        proto.tensor_shape.dim.add().size = d
    proto.tensor_shape.unknown_rank = draw(st.booleans()) and draw(st.booleans())
    choice = draw(st.sampled_from(["content", "int", "float", "string", "none"]))
    if choice == "content":
        proto.tensor_content = draw(st.binary(max_size=3 * 16 * 16 * 3))
    elif choice == "int":
        proto.int_val.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=20)))
    elif choice == "float":
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=20)))
    elif choice == "string":
        proto.string_val.extend(draw(st.lists(st.one_of(st.binary(max_size=30), image_headers), max_size=5)))
    return proto


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring width x height (no pixel data)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


# Encoded-image shapes: truncated headers and declared sizes up to decompression bombs.
image_headers = st.one_of(
    st.tuples(st.integers(1, 70000), st.integers(1, 70000)).map(lambda wh: _png_header(*wh)),
    st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a\xff\xff\xff\xff", b"BM" + b"\xff" * 30]),
)


@st.composite
def short_tensors(draw):
    """Fewer values than the shape declares (TensorFlow repeats the last): claims far beyond the limits."""
    from tensorflow.core.framework import tensor_pb2

    string = draw(st.booleans())
    proto = tensor_pb2.TensorProto(dtype=7 if string else 4)
    shape = [draw(st.sampled_from([1, 64, 1025, 5461, 1_000_000, 2**40]))]
    if not string:
        shape += [16, 16, 3]
    for d in shape:
        proto.tensor_shape.dim.add().size = d
    if string:
        proto.string_val.append(draw(st.one_of(st.binary(max_size=8), st.just(b"x" * (1 << 20)), image_headers)))
    else:
        proto.int_val.append(draw(st.integers(0, 255)))
    return proto


@pytest.fixture(scope="module")
def stub(exports, tmp_path_factory):
    base = tmp_path_factory.mktemp("repo")
    publish(exports["v1"], base)
    server = start_server(single_model_config(MODEL, base / MODEL), batching=BatchingOptions(max_batch_size=4, num_batch_threads=1))
    channel, prediction, _ = grpc_stubs(server.grpc_target)
    yield server, prediction
    channel.close()
    server.stop()


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(proto=tensor_protos(), input_name=st.sampled_from(["images", "image_bytes", "x"]),
       signature=st.sampled_from(["", "serving_bytes", "nope"]), filters=st.lists(st.sampled_from(["class_ids", "y"]), max_size=2))
def test_predict_never_answers_internal_errors(stub, proto, input_name, signature, filters):
    from tensorflow_serving.apis import predict_pb2

    _, prediction = stub
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    request.inputs[input_name].CopyFrom(proto)
    request.output_filter.extend(filters)
    try:
        prediction.Predict(request, timeout=30)
    except grpc.RpcError as err:
        assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED), err.details()


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(proto=short_tensors())
def test_short_tensors_never_expand_past_the_limits(stub, proto):
    from tensorflow_serving.apis import predict_pb2

    _, prediction = stub
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "serving_bytes" if proto.dtype == 7 else ""
    request.inputs["image_bytes" if proto.dtype == 7 else "images"].CopyFrom(proto)
    try:
        prediction.Predict(request, timeout=30)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=st.binary(max_size=200), method=st.sampled_from([
    "/tensorflow.serving.PredictionService/Predict", "/tensorflow.serving.PredictionService/GetModelMetadata",
    "/tensorflow.serving.PredictionService/Classify", "/tensorflow.serving.ModelService/GetModelStatus",
    "/tensorflow.serving.ModelService/HandleReloadConfigRequest"]))
def test_raw_request_bytes_never_get_unknown_or_internal(stub, payload, method):
    server, _ = stub
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            call(payload, timeout=30)
        except grpc.RpcError as err:
            assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (err.code(), err.details())


def test_server_is_alive_after_grpc_fuzzing(stub):
    server, _ = stub
    assert server.manager.readiness()["ready"]
