"""What the gateway writes about each request: Prometheus metrics and one inference-log row per
predicted row (variant, assignment, version, prediction, input facts, latency, status)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ingot.capture.hook import offer_captures
from ingot.gateway.classes import ClassCatalog
from ingot.gateway.metrics import PATH_CACHE, PATH_DEGRADED, PATH_FULL, PATH_SMALL, GatewayMetrics
from ingot.gateway.observe import batch_size, input_facts, predictions
from ingot.gateway.routing import RoutingTable
from ingot.inference_log.records import LogRecord
from ingot.protocol.signatures import SERVING_DEFAULT

SHADOW = "shadow"  # the variant of a mirrored copy's rows
# Requests with more rows or input bytes than these get their per-row work (hashes, pixel
# statistics, predictions and their metrics, log rows) on a worker thread: at the largest batch
# the limits allow (128 MiB of images) it held the event loop 0.8-1.5 s. Smaller ones stay
# inline: the hand-off would cost more than the work.
INLINE_FACTS_BYTES = 256 << 10
INLINE_ROWS = 64


@dataclass
class RequestState:
    """What the gateway knows about one request across the front end's calls into its backend
    (kept on the request's `RequestContext.state`)."""

    protocol: str
    started: float = field(default_factory=time.perf_counter)
    request_id: str = ""  # the server's own: the log key
    client_request_id: str | None = None  # the caller's id, kept beside it (never a key)
    variant: str | None = None
    how: str | None = None
    version: int | None = None
    signature: str = SERVING_DEFAULT
    logged: bool = False
    predict: bool = False
    capture_off: bool = False  # the caller sent `x-ingot-capture: off`
    cascadable: bool = False  # assigned to an arm (no version or label named): its cascade may answer
    answered_by: str | None = None  # `small` or `full` once a cascade decided (ingot.gateway.cascade)
    cache_hit: bool = False  # answered from the prediction cache
    degraded: str | None = None  # why the answer is not the assigned model's own


class RequestRecorder:
    def __init__(self, *, sink: Any | None, metrics: GatewayMetrics, classes: ClassCatalog,
                 capture: Any | None = None) -> None:
        self.sink = sink
        self.metrics = metrics
        self.classes = classes
        self.capture = capture  # an ingot.capture.writer.CaptureWriter, or None
        self._worker: Any = None  # ThreadPoolExecutor for large inputs' facts, made on first use

    def drain(self) -> None:
        """Wait for the rows still being built off the event loop (before the sinks close)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    def record(self, table: RoutingTable, state: RequestState, inputs: Mapping[str, np.ndarray] | None,
               outputs: Mapping[str, np.ndarray] | None, status: str, *, variant: str, how: str,
               version: int | None, protocol: str, count: bool = True, evidence: bool = False,
               answered_by: str | None = None) -> None:
        """Metrics and inference-log rows for one answered (or failed) request; `evidence`: the
        rows count for rollouts and drift (ingot.gateway.evidence); `answered_by`: `small` or
        `full` when the arm is a cascade (ingot.gateway.cascade), also its latency path."""
        own = variant != SHADOW  # a mirrored copy's rows are never the request's cache hit or fallback
        if own:
            state.logged = True
        latency = time.perf_counter() - state.started
        version_label = str(version) if version is not None else ""
        if count:
            self.metrics.requests.labels(table.model, variant, version_label, protocol, status).inc()
            self.metrics.latency.labels(table.model, variant, version_label, protocol).observe(latency)
            path = (PATH_DEGRADED if own and state.degraded else PATH_CACHE if own and state.cache_hit
                    else PATH_SMALL if answered_by == PATH_SMALL else PATH_FULL)
            self.metrics.observe_path(table.model, variant, path, latency)
        rows = batch_size(inputs) if inputs else 0
        args = (table, state, inputs, outputs, rows, status, variant, how, version, version_label, latency,
                count, evidence, answered_by)
        if rows > INLINE_ROWS or (rows and inputs and sum(int(getattr(v, "nbytes", 0)) for v in inputs.values())
                                  > INLINE_FACTS_BYTES):
            if self._worker is None:
                from concurrent.futures import ThreadPoolExecutor

                self._worker = ThreadPoolExecutor(1, thread_name_prefix="gateway-facts")
            try:
                self._worker.submit(self._per_row, *args)
                return
            except RuntimeError:  # shut down by drain(): write inline
                pass
        self._per_row(*args)

    def _per_row(self, table: RoutingTable, state: RequestState, inputs: Mapping[str, np.ndarray] | None,
                 outputs: Mapping[str, np.ndarray] | None, rows: int, status: str, variant: str, how: str,
                 version: int | None, version_label: str, latency: float, count: bool, evidence: bool,
                 answered_by: str | None) -> None:
        """Per-row predictions and their metrics, input facts, captures and log rows of one request
        (inline, or on the worker thread for large requests)."""
        own = variant != SHADOW
        predicted = predictions(outputs, rows) if status == "OK" else []
        if status == "OK":
            self.classes.observe(table.model, version, outputs)
            if count:
                for p in predicted:
                    self.metrics.record_prediction(table.model, variant, version_label, p.class_name, p.confidence)
        captured = self._capture(table, state, inputs, rows, status, variant)
        if self.sink is None and not captured:
            return
        facts = input_facts(inputs) if rows and inputs is not None else []
        if captured:
            captured = offer_captures(self.capture, table, inputs, facts, captured)
        if self.sink is None:
            return
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
                latency_ms=latency * 1000.0, status=status, client_request_id=state.client_request_id,
                evidence=evidence, captured=row in captured, answered_by=answered_by,
                cache_hit=own and state.cache_hit, degraded=state.degraded if own else None,
            ))
        self.sink.submit(records)

    def _capture(self, table: RoutingTable, state: RequestState, inputs: Mapping[str, np.ndarray] | None,
                 rows: int, status: str, variant: str) -> set[int]:
        """The rows whose inputs this request offers to the capture store (sampled per row)."""
        policy = table.capture
        if (self.capture is None or policy is None or not policy.enabled or status != "OK" or variant == SHADOW
                or state.capture_off or not rows or inputs is None):
            return set()
        return {row for row in range(rows) if self.capture.sampled(policy)}
