"""The per-path latency histogram: fine buckets around the SLA, one series per model, arm, path."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ingot.gateway.metrics import PATH_LATENCY_BUCKETS_S, GatewayMetrics


def _buckets(text: str) -> dict[tuple[str, str, str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "ingot_gateway_path_latency_seconds":
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    out[(s.labels["model"], s.labels["arm"], s.labels["path"], s.labels["le"])] = s.value
    return out


def test_path_histogram_is_exported_per_model_arm_path_with_millisecond_buckets():
    m = GatewayMetrics()
    m.observe_path("digits", "champion", "full", 0.0123)
    m.observe_path("digits", "challenger", "full", 0.0405)
    b = _buckets(m.render().decode())
    assert b[("digits", "champion", "full", "0.012")] == 0
    assert b[("digits", "champion", "full", "0.013")] == 1
    assert b[("digits", "challenger", "full", "0.04")] == 0
    assert b[("digits", "challenger", "full", "0.041")] == 1
    assert [round(x * 1000) for x in PATH_LATENCY_BUCKETS_S[:50]] == list(range(1, 51))


def test_unknown_path_is_refused():
    with pytest.raises(ValueError, match="unknown latency path"):
        GatewayMetrics().observe_path("digits", "champion", "fast", 0.01)


@pytest.mark.xdist_group("serving-conformance")
def test_served_requests_land_in_the_full_path_series(start_gateway, conformance_server):
    from tests.gateway.conftest import routes_document
    from tests.gateway.test_gateway_api import predict
    from tests.serving.support import MODEL, http

    gateway = start_gateway(routes_document(conformance_server, weight=0))
    assert [predict(gateway)[0] for _ in range(2)] == [200, 200]
    _, text, _ = http("GET", gateway.rest_url + "/monitoring/prometheus/metrics")
    counts = {(f.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(text) for s in f.samples if s.name.endswith("_count")}
    key = ("ingot_gateway_path_latency_seconds", (("arm", "champion"), ("model", MODEL), ("path", "full")))
    assert counts[key] == 2
