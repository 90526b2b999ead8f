"""The confidence cascade: an arm's small model answers when it is sure, its full model otherwise.

An arm of the routing table may carry `cascade: {small: {rest, grpc, version}, threshold: 0.93}`
inside its upstream entry. A predict assigned to that arm goes first to the small upstream; when
every row of its answer has a top-1 probability of at least `threshold`, that answer is the
caller's (`x-ingot-answered-by: small`, the small version in `x-ingot-model-version`); otherwise
the request is forwarded to the arm's own (full) upstream as if there were no cascade
(`x-ingot-answered-by: full`). A small upstream that is down, errs, or answers without
`probabilities` (another signature, an output filter) hands the request to the full model; the
failures are counted (`ingot_gateway_cascade_small_failures`).

The arm stays the unit of the A/B test: a cascaded arm's rows keep the arm as their variant and
their evidence flag, so the rollout compares whole cascades; the log's `answered_by` says which
model answered each row. Requests that name a version or a label (`versions/N`, `labels/L`) ask
for that model and are never cascaded.

Threshold choice: `ingot cascade calibrate` (ingot.evaluate.cascade) on the validation split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ingot.protocol.signatures import PROBABILITIES

if TYPE_CHECKING:
    from ingot.gateway.choose import GatewayTarget
    from ingot.gateway.metrics import GatewayMetrics
    from ingot.gateway.routing import RoutingTable, Upstream
    from ingot.gateway.upstream import UpstreamPool
    from ingot.serving.backend import Forwarded, PredictCall

SMALL, FULL = "small", "full"  # x-ingot-answered-by and the log's answered_by
_KEYS = ("small", "threshold")


@dataclass(frozen=True)
class Cascade:
    """One arm's cascade: the small model's upstream and the top-1 probability it must reach."""

    small: Upstream
    threshold: float

    def as_dict(self) -> dict[str, Any]:
        small = self.small
        return {"small": {"rest": small.rest, "grpc": small.grpc, "version": small.version},
                "threshold": self.threshold}


def parse_cascade(doc: Any, key: str) -> Cascade:
    """A Cascade from the `cascade` mapping at `key` (e.g. `upstreams.champion.cascade`), or
    RoutingError naming the key at fault."""
    from ingot.gateway.routing import RoutingError, _no_unknown_keys, _upstream

    if not isinstance(doc, Mapping):
        raise RoutingError(f"routing table {key}: expected a mapping {{small: {{rest, grpc, version}}, "
                           f"threshold: 0..1}}, got {doc!r}")
    _no_unknown_keys(doc, _KEYS, f"{key}.")
    if "small" not in doc:
        raise RoutingError(f"routing table {key}.small: missing; expected the small model's {{rest, grpc, version}}")
    small = _upstream(doc["small"], f"{key}.small")
    threshold = doc.get("threshold")
    if (isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold)
            or not 0 <= threshold <= 1):
        raise RoutingError(f"routing table {key}.threshold: expected the small model's top-1 probability at or "
                           f"above which it answers, a number 0..1 (ingot cascade calibrate picks one), "
                           f"got {threshold!r}")
    return Cascade(small=small, threshold=float(threshold))


def confident(outputs: Mapping[str, np.ndarray] | None, threshold: float) -> bool:
    """True when the answer has probabilities and every row's top-1 reaches the threshold (a
    batch is answered by one model: the small one only when it is sure of every row)."""
    if not outputs or PROBABILITIES not in outputs:
        return False
    probabilities = np.asarray(outputs[PROBABILITIES])
    if probabilities.ndim != 2 or probabilities.shape[0] == 0 or probabilities.shape[1] == 0:
        return False
    top1 = probabilities.max(axis=1)
    return bool(np.all(top1 >= threshold))


@dataclass
class SmallAnswer:
    """The small model's answer, when it is the one to return."""

    target: GatewayTarget
    forwarded: Forwarded
    outputs: Mapping[str, np.ndarray] | None
    status: str


class CascadeRunner:
    """Asks an arm's small model first; the backend forwards to the full model when this says no."""

    def __init__(self, pool: UpstreamPool, metrics: GatewayMetrics) -> None:
        from prometheus_client import Counter, Histogram

        from ingot.gateway.metrics import PATH_LATENCY_BUCKETS_S

        self.pool = pool
        self.metrics = metrics
        self.answers = Counter(
            "ingot_gateway_cascade_answers", "Requests of a cascaded arm, by the model that answered (small, full).",
            ["model", "arm", "answered_by"], registry=metrics.registry)
        self.small_failures = Counter(
            "ingot_gateway_cascade_small_failures", "Cascaded requests the full model answered because the small "
            "upstream was down, erred or answered without probabilities.", ["model", "arm"], registry=metrics.registry)
        self.small_latency = Histogram(
            "ingot_gateway_cascade_small_seconds", "Wall time of the small model's call, whoever answered.",
            ["model", "arm"], buckets=PATH_LATENCY_BUCKETS_S, registry=metrics.registry)

    async def try_small(self, table: RoutingTable, cascade: Cascade, target: GatewayTarget, call: PredictCall,
                        timeout: float, request_id: str) -> SmallAnswer | None:
        """The small model's answer when it is confident enough; None: the full model answers."""
        from dataclasses import replace

        from ingot.gateway.forward import forward
        from ingot.gateway.upstream import UpstreamDown
        from ingot.protocol.model_spec import ModelSpec
        from ingot.protocol.status import ServingError

        small = cascade.small
        client = self.pool.client(small)
        if client.looks_down:
            self.small_failures.labels(table.model, target.variant).inc()
            return None
        small_target = replace(target, version=small.version, client=client, spec=ModelSpec(table.model, small.version))
        started = time.perf_counter()
        try:
            forwarded, outputs, status = await forward(small_target, call, timeout, request_id)
        except (UpstreamDown, ServingError):
            self.small_failures.labels(table.model, target.variant).inc()
            return None
        finally:
            self.small_latency.labels(table.model, target.variant).observe(time.perf_counter() - started)
        if status != "OK" or not outputs or PROBABILITIES not in outputs:
            self.small_failures.labels(table.model, target.variant).inc()
            return None
        if not confident(outputs, cascade.threshold):
            return None
        return SmallAnswer(small_target, forwarded, outputs, status)

    def count(self, model: str, arm: str, answered_by: str) -> None:
        self.answers.labels(model, arm, answered_by).inc()
