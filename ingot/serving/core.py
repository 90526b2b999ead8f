"""What the REST and gRPC handlers share: resolve a model, run a prediction with a deadline,
count it. The handlers only translate their wire format to and from these calls."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingot.serving.manager import ModelManager
from ingot.serving.metrics import ServingMetrics
from ingot.serving.rest_json import JsonLimits
from ingot.serving.status import Code, ServingError, unavailable


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int = 32 << 20
    max_json_depth: int = 32
    max_elements: int = 1 << 24
    default_timeout_s: float = 30.0

    @property
    def json(self) -> JsonLimits:
        return JsonLimits(max_depth=self.max_json_depth, max_elements=self.max_elements)


class ServingCore:
    def __init__(self, manager: ModelManager, metrics: ServingMetrics, limits: RequestLimits) -> None:
        self.manager = manager
        self.metrics = metrics
        self.limits = limits
        self.draining = False
        self.in_flight = 0

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Any:
        if self.draining:
            raise unavailable("the server is shutting down and takes no new requests")
        return self.manager.resolve(name, version, label)

    async def run(self, servable: Any, signature_name: str, inputs: dict[str, np.ndarray],
                  timeout_s: float | None, *, model_spec: tuple[str, int | None, str | None] | None = None,
                  ) -> tuple[dict[str, np.ndarray], Any]:
        """Submit to the servable's runner and wait at most `timeout_s`; a request still queued
        when its time is up is cancelled, so the batch thread never runs it. Returns the outputs
        and the servable that produced them.

        A version can start unloading between resolve() and here (a rollover); the request then
        goes to what `model_spec` resolves to now, if its signature is the same, so rollovers
        lose no request."""
        from ingot.serving.servable import ServableUnloaded

        try:
            future: Future = servable.submit(signature_name, inputs)
        except ServableUnloaded:
            if model_spec is None:
                raise
            fresh = self.manager.resolve(*model_spec)
            if fresh is servable or fresh.signatures.get(signature_name or "serving_default") != \
                    servable.signatures.get(signature_name or "serving_default"):
                raise
            servable = fresh
            future = servable.submit(signature_name, inputs)
        waiter = asyncio.wrap_future(future)
        limit = self.limits.default_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(limit if limit and limit > 0 else None):
                return await waiter, servable
        except TimeoutError:
            future.cancel()
            raise ServingError(
                Code.DEADLINE_EXCEEDED,
                f"Deadline exceeded: the prediction did not finish within {limit * 1000:.0f} ms",
            ) from None

    def track(self) -> "_InFlight":
        return _InFlight(self)


class _InFlight:
    """Counts requests in progress so shutdown can wait for them."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core
        self.started = time.perf_counter()

    def __enter__(self) -> "_InFlight":
        self.core.in_flight += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self.core.in_flight -= 1

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started
