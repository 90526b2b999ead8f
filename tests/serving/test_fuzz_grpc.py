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
        proto.string_val.extend(draw(st.lists(st.binary(max_size=30), max_size=5)))
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


def test_server_is_alive_after_grpc_fuzzing(stub):
    server, _ = stub
    assert server.manager.readiness()["ready"]
