"""The serving suite's gRPC fuzz tests (hypothesis), run THROUGH a gateway in front of `ingot serve`:
hostile tensors and raw bytes never get INTERNAL or UNKNOWN, and the gateway keeps serving."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import routes_document, write_routes
from tests.serving import test_fuzz_grpc as fuzz_suite
from tests.serving.support import (
    MODEL,
    colour_images,
    grpc_stubs,
    predict_request,
    publish,
    start_server,
)

pytestmark = pytest.mark.xdist_group("serving-fuzz")


@pytest.fixture(scope="module")
def stub(exports, tmp_path_factory):
    from ingot.gateway.server import GatewayOptions, GatewayThread
    from ingot.serving.config import BatchingOptions, single_model_config

    base = tmp_path_factory.mktemp("repo")
    publish(exports["v1"], base)
    server = start_server(single_model_config(MODEL, base / MODEL),
                          batching=BatchingOptions(max_batch_size=4, num_batch_threads=1))
    root = tmp_path_factory.mktemp("fuzz-grpc-gateway")
    write_routes(root / "routes.yaml", routes_document(server, champion=1, challenger=None))
    gateway = GatewayThread(GatewayOptions(routes=str(root / "routes.yaml"), host="127.0.0.1", grpc_port=0,
                                           rest_port=0, log_url=f"sqlite:///{root / 'log.db'}",
                                           shutdown_grace_s=5.0)).start()
    channel, prediction, _ = grpc_stubs(gateway.grpc_target)
    yield gateway, prediction
    channel.close()
    gateway.stop()
    server.stop()


for _name in dir(fuzz_suite):
    if _name.startswith("test_") and _name != "test_server_is_alive_after_grpc_fuzzing":  # asks the model manager
        globals()[f"test_through_gateway_{_name[5:]}"] = getattr(fuzz_suite, _name)


def test_the_gateway_still_serves_after_grpc_fuzzing(stub):
    _, prediction = stub
    response = prediction.Predict(predict_request(images=colour_images([0])), timeout=30)
    assert response.model_spec.version.value == 1
