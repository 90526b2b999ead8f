"""TF Serving's Prometheus text: names with colons, no `_total`/`_created`, microsecond buckets,
labels in TF Serving's order plus model_version; per-server registries; bounded label sets."""

from __future__ import annotations

from ingot.serving import metrics as metrics_module
from ingot.serving.metrics import ServingMetrics


def test_render_matches_tf_serving_text():
    m = ServingMetrics()
    m.record_request("flowers", 3, "OK")
    m.record_request("flowers", 3, "OK")
    m.record_latency("flowers", 3, "predict", "REST", 0.000123)
    text = m.render()
    lines = text.splitlines()
    assert "# TYPE :tensorflow:serving:request_count counter" in lines
    assert ':tensorflow:serving:request_count{model_name="flowers",status="OK",model_version="3"} 2' in lines
    assert ':tensorflow:serving:request_latency_bucket{model_name="flowers",API="predict",entrypoint="REST",model_version="3",le="10"} 0' in lines
    assert ':tensorflow:serving:request_latency_bucket{model_name="flowers",API="predict",entrypoint="REST",model_version="3",le="188.957"} 1' in lines
    assert ':tensorflow:serving:request_latency_bucket{model_name="flowers",API="predict",entrypoint="REST",model_version="3",le="+Inf"} 1' in lines
    assert ':tensorflow:serving:request_latency_sum{model_name="flowers",API="predict",entrypoint="REST",model_version="3"} 123' in lines
    assert not any("_total" in line or "_created" in line or line.startswith("# HELP") for line in lines)
    assert text.endswith("\n")


def test_each_server_has_its_own_registry():
    a, b = ServingMetrics(), ServingMetrics()
    a.record_request("m", 1, "OK")
    assert 'model_name="m"' in a.render() and 'model_name="m"' not in b.render()


def test_label_sets_from_request_names_are_bounded(monkeypatch):
    monkeypatch.setattr(metrics_module, "MAX_SERIES", 5)
    m = ServingMetrics()
    for i in range(50):
        m.record_request(f"random-{i}", None, "NOT_FOUND")
    text = m.render()
    assert text.count(":tensorflow:serving:request_count{") == 6  # 5 names, then one overflow series
    assert ':tensorflow:serving:request_count{model_name="__other__",status="NOT_FOUND",model_version=""} 45' in text
