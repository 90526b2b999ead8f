"""The front ends over a backend that is not the local model manager (what the gateway plugs in):
request headers reach it lower-cased, its response headers go back (REST headers, gRPC initial
metadata), it gets the raw body / PredictRequest and the decoded inputs, a ready answer passes
through unchanged, and its errors map to TF Serving's codes. No model, no TensorFlow graph."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading

import numpy as np
import pytest

from ingot.protocol.status import Code, ServingError, not_found
from ingot.protocol.tensors import DT_FLOAT, DT_UINT8, SignatureSpec, TensorSpec
from ingot.serving.backend import (
    Backend,
    FixedTarget,
    Forwarded,
    PredictResult,
    StatusResult,
)

SIGNATURE = SignatureSpec(
    "serving_default",
    inputs={"images": TensorSpec(DT_UINT8, (None, 2))},
    outputs={"scores": TensorSpec(DT_FLOAT, (None, 3))},
)


class Recording(Backend):
    """Answers with zeros, or with a canned upstream answer when `forward` is set; records calls."""

    def __init__(self) -> None:
        self.calls: list = []
        self.forward: Forwarded | None = None
        self.fail: ServingError | None = None

    async def resolve(self, ctx, spec):
        self.calls.append(("resolve", dict(ctx.headers), spec))
        ctx.response_headers["x-ingot-variant"] = "challenger"
        if self.fail is not None:
            raise self.fail
        return FixedTarget(spec.name, 7, {"serving_default": SIGNATURE})

    async def predict(self, ctx, target, call):
        self.calls.append(("predict", call))
        ctx.response_headers["x-ingot-model-version"] = "7"
        batch = len(call.inputs["images"])
        outputs = {"scores": np.full((batch, 3), 0.5, np.float32)}
        return PredictResult(outputs, target.name, 7, "serving_default", forwarded=self.forward)

    async def metadata(self, ctx, spec):
        raise not_found(f"no metadata here for {spec.name}")

    async def status(self, ctx, spec):
        return StatusResult(forwarded=Forwarded(200, b'{"model_version_status":[]}'))


@pytest.fixture()
def served():
    """A FrontEnd with the Recording backend on free loopback ports, on its own loop thread."""
    from ingot.serving.frontend import FrontEnd, Listeners, ListenOptions, RequestLimits
    from ingot.serving.metrics import ServingMetrics

    backend = Recording()
    front = FrontEnd(backend, ServingMetrics(), RequestLimits())
    listeners = Listeners(front, ListenOptions(rest_port=0, grpc_port=0, metrics_path="/metrics"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(listeners.start(), loop).result(30)
    yield backend, listeners, front
    asyncio.run_coroutine_threadsafe(listeners.stop(5), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _post(port: int, path: str, body: bytes, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_rest_predict_passes_headers_body_and_inputs_and_returns_backend_headers(served):
    backend, listeners, _ = served
    body = b'{"instances": [[1, 2], [3, 4]]}'
    status, headers, payload = _post(listeners.rest_port, "/v1/models/digits:predict", body, {"X-Ingot-Caller": "u1"})
    assert status == 200
    assert json.loads(payload) == {"predictions": [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]}
    assert headers["x-ingot-variant"] == "challenger" and headers["x-ingot-model-version"] == "7"
    assert headers["X-Model-Version"] == "7"
    (_, seen_headers, spec), (_, call) = backend.calls
    assert seen_headers["x-ingot-caller"] == "u1" and spec.name == "digits"
    assert call.body == body and call.row_format is True
    assert call.inputs["images"].dtype == np.uint8 and call.inputs["images"].tolist() == [[1, 2], [3, 4]]


def test_rest_forwarded_answer_is_returned_unchanged(served):
    backend, listeners, _ = served
    backend.forward = Forwarded(503, b'{ "error": "upstream says no" }')
    status, headers, payload = _post(listeners.rest_port, "/v1/models/digits/versions/7:predict", b'{"inputs": [[9, 9]]}')
    assert status == 503 and payload == b'{ "error": "upstream says no" }'
    assert headers["x-ingot-variant"] == "challenger"


def test_rest_inputs_are_checked_against_the_backend_signature_before_predict(served):
    backend, listeners, _ = served
    status, headers, payload = _post(listeners.rest_port, "/v1/models/digits:predict", b'{"instances": [[1.5, 2]]}')
    assert status == 400 and "uint8" in json.loads(payload)["error"]
    assert [c[0] for c in backend.calls] == ["resolve"]  # predict never called
    status, _, payload = _post(listeners.rest_port, "/v1/models/digits:predict", b'{"instances": [[1, 2, 3]]}')
    assert status == 400 and "[-1,2]" in json.loads(payload)["error"]


def test_rest_backend_errors_keep_their_http_status_and_headers(served):
    backend, listeners, _ = served
    backend.fail = ServingError(Code.UNAVAILABLE, "champion upstream down")
    status, headers, payload = _post(listeners.rest_port, "/v1/models/digits:predict", b'{"instances": [[1, 2]]}')
    assert status == 503 and json.loads(payload) == {"error": "champion upstream down"}
    assert headers["x-ingot-variant"] == "challenger"
    conn = http.client.HTTPConnection("127.0.0.1", listeners.rest_port, timeout=10)
    conn.request("GET", "/v1/models/digits/metadata")
    response = conn.getresponse()
    assert response.status == 404 and "no metadata here" in json.loads(response.read())["error"]
    conn.request("GET", "/v1/models/digits")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b'{"model_version_status":[]}'
    conn.close()


def test_grpc_predict_gets_metadata_request_and_inputs_and_sends_initial_metadata(served):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from ingot.protocol.tensors import array_to_proto

    backend, listeners, _ = served
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    array_to_proto(np.array([[5, 6]], np.uint8), request.inputs["images"])
    with grpc.insecure_channel(f"127.0.0.1:{listeners.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response, call = stub.Predict.with_call(request, timeout=10, metadata=(("x-ingot-caller", "u2"),))
        assert dict(call.initial_metadata())["x-ingot-variant"] == "challenger"
        assert response.model_spec.version.value == 7 and list(response.outputs["scores"].tensor_shape.dim)[1].size == 3
        (_, seen_headers, _), (_, predict_call) = backend.calls
        assert seen_headers["x-ingot-caller"] == "u2"
        assert predict_call.grpc_request == request and predict_call.inputs["images"].tolist() == [[5, 6]]

        canned = predict_pb2.PredictResponse()
        canned.model_spec.name = "from-upstream"
        backend.forward = Forwarded(message=canned)
        assert stub.Predict(request, timeout=10) == canned

        backend.fail = not_found("no such model upstream")
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert dict(info.value.initial_metadata())["x-ingot-variant"] == "challenger"


def test_metrics_count_requests_by_the_version_the_backend_reports(served):
    backend, listeners, front = served
    _post(listeners.rest_port, "/v1/models/digits:predict", b'{"instances": [[1, 2]]}')
    text = front.metrics.render()
    assert ':tensorflow:serving:request_count{model_name="digits",status="OK",model_version="7"} 1' in text


def test_predict_errors_reach_the_front_end_hook_with_the_request_context(served):
    """What the gateway uses to log a request the front end refused after its backend chose."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    backend, listeners, front = served
    failed: list = []
    front.on_predict_error(lambda ctx, status: failed.append((ctx.protocol, status, ctx.response_headers.copy())))
    assert _post(listeners.rest_port, "/v1/models/digits:predict", b'{"instances": [[1, 2]]}')[0] == 200
    assert _post(listeners.rest_port, "/v1/models/digits:predict", b'{"instances": [[1.5, 2]]}')[0] == 400
    assert failed == [("REST", "INVALID_ARGUMENT", {"x-ingot-variant": "challenger"})]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.inputs["images"].dtype = 4  # DT_UINT8
    request.inputs["images"].tensor_shape.dim.add().size = 1
    request.inputs["images"].tensor_shape.dim.add().size = 3  # the signature takes 2
    request.inputs["images"].int_val.extend([1, 2, 3])
    with grpc.insecure_channel(f"127.0.0.1:{listeners.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError):
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    assert failed[1][:2] == ("GRPC", "INVALID_ARGUMENT")
