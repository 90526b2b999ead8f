"""The serving suite's REST and gRPC conformance tests, run THROUGH a gateway in front of the same
`ingot serve` (champion version 2, challenger version 1, no split): a TF Serving client sees the
same answers and errors. Tests about the server itself (its model listing, its metric names,
model config reloads) are not repeated here."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import routes_document
from tests.serving import test_grpc_api as grpc_suite
from tests.serving import test_rest_api as rest_suite
from tests.serving.support import grpc_stubs

pytestmark = pytest.mark.xdist_group("serving-conformance")

SERVER_ONLY = {
    "test_health_readiness_and_model_listing",
    "test_prometheus_metrics_use_tf_serving_names_plus_model_version",
    "test_grpc_requests_are_counted_with_the_grpc_entrypoint",
    "test_handle_reload_config_adds_relabels_and_removes_models",
    "test_reload_config_is_refused_by_default_naming_the_flag",
    "test_reload_config_only_takes_base_paths_under_the_model_roots",
    "test_loopback_peers",
    "test_reload_from_a_remote_peer_is_refused",
}


@pytest.fixture(scope="module")
def gateway(conformance_server, tmp_path_factory):
    from ingot.gateway.server import GatewayOptions, GatewayThread
    from ingot.serving.frontend import RequestLimits
    from tests.gateway.conftest import write_routes

    root = tmp_path_factory.mktemp("conformance-gateway")
    write_routes(root / "routes.yaml", routes_document(conformance_server))
    options = GatewayOptions(
        routes=str(root / "routes.yaml"), host="127.0.0.1", grpc_port=0, rest_port=0,
        log_url=f"sqlite:///{root / 'log.db'}",
        limits=RequestLimits(max_body_bytes=256 << 10, max_json_depth=16, max_elements=1 << 16,
                             default_timeout_s=30.0),
        shutdown_grace_s=5.0,
    )
    with GatewayThread(options) as running:
        yield running


@pytest.fixture(scope="module")
def server(gateway):
    return gateway


@pytest.fixture(scope="module")
def url(gateway):
    return gateway.rest_url


@pytest.fixture(scope="module")
def stubs(gateway):
    channel, prediction, models = grpc_stubs(gateway.grpc_target)
    yield prediction, models
    channel.close()


def _collect(suite, prefix):
    for name in dir(suite):
        if name.startswith("test_") and name not in SERVER_ONLY:
            globals()[f"test_{prefix}_{name[5:]}"] = getattr(suite, name)


_collect(rest_suite, "rest")
_collect(grpc_suite, "grpc")
