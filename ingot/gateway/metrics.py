"""The gateway's Prometheus metrics, per variant and model version (prometheus_client, one
registry per gateway so tests can run several in one process).

Counters the log sink and the routing watcher keep themselves (records written and dropped,
reloads and rejections) are read at scrape time by a collector, so the request path never
touches them twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# Per-path latency: 1 ms steps to 50 ms (where a serving SLA sits), then coarser, so p99 is
# read from the histogram to the millisecond where it matters.
PATH_LATENCY_BUCKETS_S = (
    *(ms / 1000 for ms in range(1, 51)), 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# The `path` label: which way an answer came. `full` is the arm's own model; `small` (a cascade's
# small model), `cache` (an answer cache hit) and `degraded` (a fallback answer) are reserved for
# the paths that produce them.
PATH_FULL, PATH_SMALL, PATH_CACHE, PATH_DEGRADED = "full", "small", "cache", "degraded"
PATHS = (PATH_FULL, PATH_SMALL, PATH_CACHE, PATH_DEGRADED)
MAX_CLASS_SERIES = 1000  # class names come from upstream answers: bound the label values


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        variant_labels = ["model", "variant", "model_version"]
        self.requests = Counter(
            "ingot_gateway_requests", "Requests answered, by the variant that answered and the status.",
            [*variant_labels, "protocol", "status"], registry=r)
        self.latency = Histogram(
            "ingot_gateway_request_latency_seconds", "Wall time of a request through the gateway.",
            [*variant_labels, "protocol"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.path_latency = Histogram(
            "ingot_gateway_path_latency_seconds", "Wall time of a request through the gateway, by model, "
            "arm (variant) and path (full, small, cache, degraded); buckets 1 ms apart up to 50 ms.",
            ["model", "arm", "path"], buckets=PATH_LATENCY_BUCKETS_S, registry=r)
        self.predictions = Counter(
            "ingot_gateway_predictions", "Predicted rows by top-1 class.", [*variant_labels, "class_name"],
            registry=r)
        self.confidence = Histogram(
            "ingot_gateway_top1_confidence", "Top-1 probability of each predicted row.", variant_labels,
            buckets=CONFIDENCE_BUCKETS, registry=r)
        self.labels = Counter(
            "ingot_gateway_feedback_labels", "Ground-truth labels joined to served rows, by correctness.",
            [*variant_labels, "outcome"], registry=r)
        self.mirrors = Counter(
            "ingot_gateway_mirror_requests", "Requests copied to the challenger, by outcome "
            "(sent, failed, dropped when too many were in flight).", ["model", "outcome"], registry=r)
        self.fallbacks = Counter(
            "ingot_gateway_fallbacks", "Challenger-assigned requests answered by the champion because the "
            "challenger was down.", ["model"], registry=r)
        self._class_keys: set[tuple[str, str, str, str]] = set()

    def record_prediction(self, model: str, variant: str, version: str, class_name: str | None,
                          confidence: float | None) -> None:
        if class_name is not None:
            key = (model, variant, version, class_name)
            if key not in self._class_keys:
                if len(self._class_keys) >= MAX_CLASS_SERIES:
                    key = (model, variant, version, "__other__")
                self._class_keys.add(key)
            self.predictions.labels(*key).inc()
        if confidence is not None:
            self.confidence.labels(model, variant, version).observe(confidence)

    def observe_path(self, model: str, arm: str, path: str, seconds: float) -> None:
        if path not in PATHS:
            raise ValueError(f"unknown latency path {path!r}: one of {', '.join(PATHS)}")
        self.path_latency.labels(model, arm, path).observe(seconds)

    def watch(self, read: Callable[[], dict[str, float]]) -> None:
        """Expose counters kept elsewhere: `read()` returns {name: value} at scrape time."""
        self.registry.register(_Readings(read))

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


_READINGS_HELP = {
    "ingot_gateway_log_records_written": ("counter", "Inference-log records written."),
    "ingot_gateway_log_records_dropped": ("counter", "Inference-log records dropped (queue full or sink down)."),
    "ingot_gateway_log_queue_depth": ("gauge", "Inference-log records waiting to be written."),
    "ingot_gateway_routing_reloads": ("counter", "Routing-table edits taken."),
    "ingot_gateway_routing_rejections": ("counter", "Routing-table edits refused (the last good table kept)."),
    "ingot_gateway_cache_hits": ("counter", "Prediction-cache lookups answered from Redis."),
    "ingot_gateway_cache_misses": ("counter", "Prediction-cache lookups that found nothing (errors included)."),
    "ingot_gateway_cache_errors": ("counter", "Prediction-cache calls that failed or timed out (Redis slow or down)."),
    "ingot_gateway_cache_skipped": ("counter", "Prediction-cache calls not made: Redis's breaker was open."),
    "ingot_gateway_cache_too_large": ("counter", "Answers not cached: larger than the model's cache.max_bytes."),
    "ingot_gateway_breakers_open": ("gauge", "Upstream breakers open or half-open now."),
}


class _Readings(Collector):
    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        for name, value in self._read().items():
            kind, text = _READINGS_HELP[name]
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, text, value=value)
