"""What the gateway writes about each request: Prometheus metrics and one inference-log row per
predicted row (variant, assignment, version, prediction, input facts, latency, status)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ingot.gateway.classes import ClassCatalog
from ingot.gateway.metrics import GatewayMetrics
from ingot.gateway.observe import batch_size, input_facts, predictions
from ingot.gateway.routing import RoutingTable
from ingot.inference_log.records import LogRecord
from ingot.protocol.signatures import SERVING_DEFAULT

SHADOW = "shadow"  # the variant of a mirrored copy's rows


@dataclass
class RequestState:
    """What the gateway knows about one request across the front end's calls into its backend
    (kept on the request's `RequestContext.state`)."""

    protocol: str
    started: float = field(default_factory=time.perf_counter)
    request_id: str = ""
    variant: str | None = None
    how: str | None = None
    version: int | None = None
    signature: str = SERVING_DEFAULT
    logged: bool = False
    predict: bool = False
    cache_hit: bool = False  # answered from the prediction cache
    degraded: str | None = None  # why the answer is not the assigned model's own


class RequestRecorder:
    def __init__(self, *, sink: Any | None, metrics: GatewayMetrics, classes: ClassCatalog) -> None:
        self.sink = sink
        self.metrics = metrics
        self.classes = classes

    def record(self, table: RoutingTable, state: RequestState, inputs: Mapping[str, np.ndarray] | None,
               outputs: Mapping[str, np.ndarray] | None, status: str, *, variant: str, how: str,
               version: int | None, protocol: str, count: bool = True) -> None:
        """Metrics and inference-log rows for one answered (or failed) request."""
        if variant != SHADOW:
            state.logged = True
        latency = time.perf_counter() - state.started
        version_label = str(version) if version is not None else ""
        if count:
            self.metrics.requests.labels(table.model, variant, version_label, protocol, status).inc()
            self.metrics.latency.labels(table.model, variant, version_label, protocol).observe(latency)
        rows = batch_size(inputs) if inputs else 0
        predicted = predictions(outputs, rows) if status == "OK" else []
        if status == "OK":
            self.classes.observe(table.model, version, outputs)
            if count:
                for p in predicted:
                    self.metrics.record_prediction(table.model, variant, version_label, p.class_name, p.confidence)
        if self.sink is None:
            return
        facts = input_facts(inputs) if rows and inputs is not None else []
        now = datetime.now(UTC)
        records = []
        for row in range(max(rows, 1)):
            fact = facts[row] if row < len(facts) else None
            pred = predicted[row] if row < len(predicted) else None
            records.append(LogRecord(
                request_id=state.request_id, row=row, ts=now, model=table.model, experiment=table.experiment,
                variant=variant, assignment=how, model_version=version, signature=state.signature,
                input_sha256=fact.input_sha256 if fact else None,
                predicted_class_id=pred.class_id if pred else None,
                predicted_class_name=pred.class_name if pred else None,
                confidence=pred.confidence if pred else None,
                input_mean=fact.input_mean if fact else None, input_std=fact.input_std if fact else None,
                latency_ms=latency * 1000.0, status=status,
                cache_hit=state.cache_hit and variant != SHADOW, degraded=state.degraded if variant != SHADOW else None,
            ))
        self.sink.submit(records)
