"""Mirroring: copies of champion requests sent to the challenger in background tasks that never
delay the caller; its answers are logged as variant `shadow` and never returned. Copies are
dropped (counted) when too many are in flight, or when they would hold more than a byte budget
(the request as received plus its decoded inputs, which a copy keeps until it is answered)."""

from __future__ import annotations

import asyncio
import logging

from ingot.gateway.assignment import MIRROR
from ingot.gateway.choose import GatewayTarget
from ingot.gateway.forward import forward
from ingot.gateway.metrics import GatewayMetrics
from ingot.gateway.records import SHADOW, RequestRecorder, RequestState
from ingot.gateway.routing import RoutingTable
from ingot.gateway.upstream import UpstreamDown, UpstreamPool
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.signatures import SERVING_DEFAULT
from ingot.protocol.status import Code, ServingError
from ingot.serving.backend import PredictCall

log = logging.getLogger(__name__)


class Mirror:
    def __init__(self, pool: UpstreamPool, metrics: GatewayMetrics, recorder: RequestRecorder, *,
                 max_in_flight: int, max_bytes_in_flight: int = 64 << 20) -> None:
        self.pool = pool
        self.metrics = metrics
        self.recorder = recorder
        self._slots = max_in_flight
        self.max_bytes = max_bytes_in_flight
        self.bytes_in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, table: RoutingTable, call: PredictCall, timeout: float, protocol: str, request_id: str) -> None:
        size = call_bytes(call)
        if len(self._tasks) >= self._slots or self.bytes_in_flight + size > self.max_bytes:
            self.metrics.mirrors.labels(table.model, "dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._shadow(table, call, timeout, protocol, request_id))
        self.bytes_in_flight += size
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self.bytes_in_flight -= size

        task.add_done_callback(done)

    async def _shadow(self, table: RoutingTable, call: PredictCall, timeout: float, protocol: str,
                      request_id: str) -> None:
        challenger = table.challenger
        if challenger is None:
            return
        client = self.pool.client(challenger)
        target = GatewayTarget(table.model, challenger.version, {}, SHADOW, MIRROR, client,
                               ModelSpec(table.model, challenger.version))
        state = RequestState(protocol, request_id=request_id, variant=SHADOW, how=MIRROR, version=challenger.version,
                             signature=call.signature_name or SERVING_DEFAULT)
        try:
            _answer, outputs, status = await forward(target, call, timeout, None)
            outcome = "sent"
        except UpstreamDown:
            outputs, status, outcome = None, Code.UNAVAILABLE.name, "failed"
        except ServingError as err:
            outputs, status, outcome = None, err.code.name, "failed"
        except Exception as err:  # noqa: BLE001 - a shadow request must never surface anywhere
            log.warning("mirror request failed: %s", err)
            outputs, status, outcome = None, Code.INTERNAL.name, "failed"
        self.metrics.mirrors.labels(table.model, outcome).inc()
        self.recorder.record(table, state, call.inputs, outputs, status, variant=SHADOW, how=MIRROR,
                             version=challenger.version, protocol=protocol, count=False)

    async def drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)


def call_bytes(call: PredictCall) -> int:
    """What a mirrored copy keeps alive: the request as received and its decoded inputs."""
    size = len(call.body) if call.body is not None else 0
    if call.grpc_request is not None:
        size += call.grpc_request.ByteSize()
    return size + sum(int(getattr(value, "nbytes", 0)) for value in (call.inputs or {}).values())
