"""Metrics: a ServiceMonitor when the Prometheus Operator's API exists, scrape annotations otherwise."""

from __future__ import annotations


def _pod_annotations(rendered, variant="champion"):
    return rendered.get("Deployment", f"ingot-{variant}")["spec"]["template"]["metadata"]["annotations"]


def test_no_service_monitor_without_the_capability(minimal):
    assert "ServiceMonitor" not in minimal.kinds()
    annotations = _pod_annotations(minimal)
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8501"
    assert annotations["prometheus.io/path"] == "/monitoring/prometheus/metrics"


def test_service_monitor_with_the_capability(render_scenario):
    rendered = render_scenario("canary-istio-mirror", prometheus_operator=True)
    (monitor,) = rendered.of_kind("ServiceMonitor")
    spec = monitor["spec"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert spec["endpoints"] == [{"port": "http", "path": "/monitoring/prometheus/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    # It selects the two per-variant Services, not the stable one (that would scrape the champion twice).
    selected = [s["metadata"]["name"] for s in rendered.of_kind("Service")
                if all(s["metadata"]["labels"].get(k) == v for k, v in spec["selector"]["matchLabels"].items())]
    assert selected == ["ingot-champion", "ingot-challenger"]
    assert spec["targetLabels"] == ["ingot.dev/variant"]
    for variant in ("champion", "challenger"):
        assert not any(k.startswith("prometheus.io/") for k in _pod_annotations(rendered, variant))


def test_service_monitor_can_be_turned_off(render_values):
    rendered = render_values({"metrics": {"serviceMonitor": {"enabled": False}}}, api_versions=["monitoring.coreos.com/v1"])
    assert "ServiceMonitor" not in rendered.kinds()
    assert _pod_annotations(rendered)["prometheus.io/scrape"] == "true"
