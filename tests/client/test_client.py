"""The Python client over REST and gRPC against the real server (same answers either way), and
its retries, timeouts and errors against small fake servers."""

from __future__ import annotations

import http.server
import json
import threading
import time

import numpy as np
import pytest

from ingot.client import Client, Code, RetryPolicy, ServingError
from ingot.errors import ConfigError
from tests.serving.support import CLASSES, MODEL, colour_images, free_port, png

pytestmark = pytest.mark.xdist_group("serving-conformance")  # shares the conformance server


@pytest.fixture(scope="module", params=["rest", "grpc"])
def client(request, conformance_server):
    url = conformance_server.rest_url if request.param == "rest" else f"grpc://{conformance_server.grpc_target}"
    with Client.connect(url, timeout_s=30) as c:
        yield c


def test_classify_uint8_arrays_bytes_and_files(client, tmp_path):
    images = colour_images([0, 1, 2], seed=31)
    by_array = client.classify(images, model=MODEL, version=1)  # a [N, H, W, 3] batch
    assert [p.class_name for p in by_array] == CLASSES
    assert [p.class_id for p in by_array] == [0, 1, 2]
    for p in by_array:
        assert p.probabilities.shape == (3,) and p.confidence == pytest.approx(float(p.probabilities.max()))
    path = tmp_path / "blue.png"
    path.write_bytes(png(images[2]))
    mixed = client.classify([images[0], png(images[1]), path], model=MODEL, label="stable")
    assert [p.class_name for p in mixed] == CLASSES
    np.testing.assert_allclose(mixed[2].probabilities, by_array[2].probabilities, atol=1e-6)


def test_predict_returns_every_output_by_name(client):
    outputs = client.predict(colour_images([1], seed=2), model=MODEL, version=1)
    assert set(outputs) == {"probabilities", "class_ids", "class_names"}
    assert outputs["class_names"].tolist() == ["green"] and int(outputs["class_ids"][0]) == 1


def test_metadata_and_status(client):
    meta = client.metadata(MODEL)
    assert meta["model_spec"]["name"] == MODEL and meta["model_spec"]["version"] == "2"
    assert set(meta["metadata"]["signature_def"]["signature_def"]) == {"serving_default", "serving_bytes", "serving_embedding"}
    assert [(s.version, s.state, s.error_code) for s in client.status(MODEL)] == [
        (2, "AVAILABLE", "OK"), (1, "AVAILABLE", "OK")]
    assert [s.version for s in client.status(MODEL, label="stable")] == [1]


def test_both_transports_give_the_same_answers(conformance_server):
    rest = Client.connect(conformance_server.rest_url)
    grpc_client = Client.connect(f"grpc://{conformance_server.grpc_target}")
    try:
        images = colour_images([2, 0], seed=8)
        a = rest.predict(images, model=MODEL)
        b = grpc_client.predict(images, model=MODEL)
        np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-6)
        assert a["class_names"].tolist() == b["class_names"].tolist()
        assert rest.metadata(MODEL, version=1) == grpc_client.metadata(MODEL, version=1)
        assert rest.status(MODEL) == grpc_client.status(MODEL)
    finally:
        rest.close()
        grpc_client.close()


def test_server_errors_keep_their_code(client):
    with pytest.raises(ServingError) as info:
        client.status("unknown")
    assert info.value.code == Code.NOT_FOUND and "unknown" in info.value.message
    with pytest.raises(ServingError) as info:
        client.classify([b"not an image"], model=MODEL)
    assert info.value.code == Code.INVALID_ARGUMENT and "JPEG, PNG, GIF or BMP" in info.value.message


def test_bad_urls_and_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="must start with http:// or https://"):
        Client.connect("localhost:8501")
    rest = Client.connect("http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="uint8 pixel values"):
        rest.classify([np.zeros((4, 4, 3), np.float32)], model=MODEL)
    with pytest.raises(ConfigError, match="no such image file"):
        rest.classify(["/nonexistent/cat.png"], model=MODEL)


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers from a script: a list of (status, body, delay) consumed one per request."""

    script: list = []
    seen: list = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).seen.append(self.path)
        status, body, delay = type(self).script.pop(0) if type(self).script else (200, {}, 0)
        time.sleep(delay)
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted():
    handler = type("Handler", (_Scripted,), {"script": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


STATUS = {"model_version_status": [{"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def test_rest_retries_503_with_backoff_then_succeeds(scripted):
    handler, url = scripted
    handler.script = [(503, {"error": "busy"}, 0), (503, {"error": "busy"}, 0), (200, STATUS, 0)]
    client = Client.connect(url, retry=RetryPolicy(attempts=4, backoff_s=0.01))
    assert [s.version for s in client.status("m")] == [3]
    assert handler.seen == ["/v1/models/m"] * 3


def test_rest_gives_up_after_the_last_attempt_and_never_retries_client_errors(scripted):
    handler, url = scripted
    handler.script = [(503, {"error": "busy"}, 0)] * 3
    client = Client.connect(url, retry=RetryPolicy(attempts=2, backoff_s=0.01))
    with pytest.raises(ServingError) as info:
        client.status("m")
    assert info.value.code == Code.UNAVAILABLE and info.value.message == "busy" and len(handler.seen) == 2
    handler.seen.clear()
    handler.script = [(404, {"error": "Could not find any versions of model m"}, 0)]
    with pytest.raises(ServingError) as info:
        client.status("m")
    assert info.value.code == Code.NOT_FOUND and len(handler.seen) == 1


def test_rest_timeout_is_an_error_not_a_hang(scripted):
    handler, url = scripted
    handler.script = [(200, STATUS, 2.0)]
    client = Client.connect(url, timeout_s=0.3, retry=RetryPolicy(attempts=1))
    with pytest.raises(ServingError) as info:  # the answer would come after 2 s; the client gives up
        client.status("m")
    assert info.value.code == Code.DEADLINE_EXCEEDED


def test_unreachable_server_is_unavailable_after_bounded_retries():
    client = Client.connect(f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(attempts=3, backoff_s=0.01))
    with pytest.raises(ServingError) as info:
        client.status("m")
    assert info.value.code == Code.UNAVAILABLE and "cannot reach" in info.value.message


def test_grpc_retries_unavailable_and_honours_deadlines():
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    calls = []

    class Flaky(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):  # noqa: N802 - generated name
            calls.append(request.model_spec.name)
            if request.model_spec.name == "slow":
                time.sleep(1.5)
            elif len(calls) < 3:
                context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
            response = get_model_status_pb2.GetModelStatusResponse()
            response.model_version_status.add(version=4, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
            return response

    server = grpc.server(futures.ThreadPoolExecutor(2))
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(Flaky(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        client = Client.connect(f"grpc://127.0.0.1:{port}", timeout_s=0.4, retry=RetryPolicy(attempts=4, backoff_s=0.01))
        assert [(s.version, s.state) for s in client.status("m")] == [(4, "AVAILABLE")]
        assert calls == ["m"] * 3
        with pytest.raises(ServingError) as info:
            client.status("slow")
        assert info.value.code == Code.DEADLINE_EXCEEDED
        client.close()
    finally:
        server.stop(0)
