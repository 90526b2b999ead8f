"""The serving suite's REST fuzz tests (hypothesis), run THROUGH a gateway in front of `ingot serve`:
never a 5xx other than 503, always a JSON error body, odd paths and compressed bodies included."""

from __future__ import annotations

import http.client

import pytest

from tests.gateway.conftest import routes_document, write_routes
from tests.serving import test_fuzz_rest as fuzz_suite
from tests.serving.support import MODEL, publish, start_server

pytestmark = pytest.mark.xdist_group("serving-fuzz")


@pytest.fixture(scope="module")
def target(exports, tmp_path_factory):
    from ingot.gateway.server import GatewayOptions, GatewayThread
    from ingot.serving.config import BatchingOptions, single_model_config
    from ingot.serving.frontend import RequestLimits

    base = tmp_path_factory.mktemp("repo")
    publish(exports["v1"], base)
    server = start_server(single_model_config(MODEL, base / MODEL),
                          batching=BatchingOptions(max_batch_size=4, num_batch_threads=1), max_body_bytes=64 << 10)
    root = tmp_path_factory.mktemp("fuzz-gateway")
    write_routes(root / "routes.yaml", routes_document(server, champion=1, challenger=None))
    gateway = GatewayThread(GatewayOptions(
        routes=str(root / "routes.yaml"), host="127.0.0.1", grpc_port=0, rest_port=0,
        log_url=f"sqlite:///{root / 'log.db'}", limits=RequestLimits(max_body_bytes=64 << 10),
        shutdown_grace_s=5.0)).start()
    connection = http.client.HTTPConnection("127.0.0.1", gateway.gateway.rest_port, timeout=30)
    yield gateway, connection
    connection.close()
    gateway.stop()
    server.stop()


for _name in dir(fuzz_suite):
    if _name.startswith("test_") and _name != "test_server_is_alive_after_fuzzing":  # asks the model manager
        globals()[f"test_through_gateway_{_name[5:]}"] = getattr(fuzz_suite, _name)


def test_the_gateway_still_serves_after_fuzzing(target):
    import json

    import numpy as np

    _, connection = target
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read()) == {"status": "alive"}
    body = json.dumps({"instances": np.zeros((1, 16, 16, 3), np.uint8).tolist()})
    connection.request("POST", f"/v1/models/{MODEL}:predict", body=body)
    response = connection.getresponse()
    assert response.status == 200 and "predictions" in json.loads(response.read())
