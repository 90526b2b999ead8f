"""Prometheus metrics under TF Serving's names, plus a `model_version` label.

Storage is prometheus_client (thread-safe, one CollectorRegistry per server so tests can run
several servers in one process). Rendering is TF Serving's own text (util/prometheus_exporter.cc):
metric names with colons (`:tensorflow:serving:request_count`), counters without the `_total`
suffix prometheus_client would add and without `_created` samples, latency histograms in
microseconds with TF Serving's buckets (10 × 1.8^i, 33 of them). Dashboards and alerts written for
TF Serving therefore work unchanged; `model_version` is what A/B comparisons add.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# monitoring::Buckets::Exponential(10, 1.8, 33)
LATENCY_BUCKETS_US = tuple(10.0 * 1.8**i for i in range(33))
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(15))

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
WARMUP_LATENCY = ":tensorflow:serving:model_warmup_latency"
BATCH_SIZE = "ingot_serving_batch_size"
MODEL_STATE = "ingot_serving_model_version_state"
MAX_SERIES = 2000
OVERFLOW_MODEL = "__other__"


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.request_count = Counter(
            REQUEST_COUNT, "The total number of requests.",
            ["model_name", "status", "model_version"], registry=r,
        )
        self.request_latency = Histogram(
            REQUEST_LATENCY,
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint", "model_version"], buckets=LATENCY_BUCKETS_US, registry=r,
        )
        self.runtime_latency = Histogram(
            RUNTIME_LATENCY,
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime", "model_version"], buckets=LATENCY_BUCKETS_US, registry=r,
        )
        self.warmup_latency = Histogram(
            WARMUP_LATENCY,
            "Distribution of wall time (in microseconds) for warming up the model.",
            ["model_path", "status"], buckets=LATENCY_BUCKETS_US, registry=r,
        )
        self.batch_size = Histogram(
            BATCH_SIZE, "Items per model call (before padding) when batching.",
            ["model_name", "model_version", "signature_name"], buckets=BATCH_SIZE_BUCKETS, registry=r,
        )
        self.model_state = Gauge(
            MODEL_STATE,
            "State of each model version (ModelVersionStatus.State number: 10 START ... 30 AVAILABLE ... 50 END).",
            ["model_name", "model_version"], registry=r,
        )

        self._children: dict[tuple, object] = {}
        # Which model names get their own series; the rest count under OVERFLOW_MODEL. The server
        # sets it to its configured models, the gateway to its routing table's model.
        self.model_known: Callable[[str], bool] | None = None

    def _child(self, metric, *labels: str):
        """labels() takes a lock and builds a key on every call; the hot path reuses children.

        Model names come from requests, so names that are not configured (`model_known`) count
        under OVERFLOW_MODEL, and past MAX_SERIES label sets new ones do too: caller-chosen names
        cannot grow memory or the metrics page."""
        known = self.model_known
        if known is not None and labels and labels[0] and not known(labels[0]):
            labels = (OVERFLOW_MODEL, *labels[1:])
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= MAX_SERIES:
                labels = (OVERFLOW_MODEL, *labels[1:])
                key = (id(metric), labels)
                child = self._children.get(key)
                if child is not None:
                    return child
            child = self._children[key] = metric.labels(*labels)
        return child

    def prepare_version(self, model_name: str, version: int) -> None:
        """Create a newly AVAILABLE version's series now, not inside its first requests."""
        self._child(self.request_count, model_name, "OK", _version(version))
        for api, entrypoint in (("predict", "REST"), ("Predict", "GRPC")):
            self._child(self.request_latency, model_name, api, entrypoint, _version(version))
        self._child(self.runtime_latency, model_name, "Predict", "TF2", _version(version))

    def record_request(self, model_name: str, version: int | None, status_name: str) -> None:
        self._child(self.request_count, model_name, status_name, _version(version)).inc()

    def record_latency(self, model_name: str, version: int | None, api: str, entrypoint: str, seconds: float) -> None:
        self._child(self.request_latency, model_name, api, entrypoint, _version(version)).observe(seconds * 1e6)

    def record_runtime(self, model_name: str, version: int, seconds: float) -> None:
        self._child(self.runtime_latency, model_name, "Predict", "TF2", _version(version)).observe(seconds * 1e6)

    def record_warmup(self, model_path: str, seconds: float) -> None:
        """A version's warm-up replay, as TF Serving reports it (by model path, status OK)."""
        self.warmup_latency.labels(model_path, "OK").observe(seconds * 1e6)

    def render(self) -> str:
        return render_tf_serving_text(self.registry)


def _version(version: int | None) -> str:
    return "" if version is None else str(version)


def _format_number(value: float) -> str:
    """absl::StrCat(double): up to six significant digits, integers without a decimal point."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())


def render_tf_serving_text(registry: CollectorRegistry) -> str:
    lines: list[str] = []
    for metric in registry.collect():
        if not metric.samples:
            continue
        kind = metric.type
        if kind == "counter":
            lines.append(f"# TYPE {metric.name} counter")
            for s in metric.samples:
                if s.name.endswith("_total"):
                    lines.append(f"{metric.name}{{{_labels(s.labels)}}} {_format_number(s.value)}")
        elif kind == "histogram":
            lines.append(f"# TYPE {metric.name} histogram")
            for s in metric.samples:
                if s.name.endswith("_created"):
                    continue
                labels = dict(s.labels)
                if "le" in labels:
                    le = float(labels["le"])
                    labels["le"] = "+Inf" if math.isinf(le) else _format_number(le)
                lines.append(f"{s.name}{{{_labels(labels)}}} {_format_number(s.value)}")
        else:
            lines.append(f"# TYPE {metric.name} {'gauge' if kind == 'gauge' else 'untyped'}")
            for s in metric.samples:
                lines.append(f"{s.name}{{{_labels(s.labels)}}} {_format_number(s.value)}")
    return "\n".join(lines) + "\n"
