"""The gateway's backend for the shared REST/gRPC front ends: choose a variant, forward to its
upstream over the same protocol, hand back the upstream's answer unchanged, and log every row.

Per request: `resolve` assigns the variant (ingot.gateway.choose) and fetches that version's
signatures (cached) so the front end can check the inputs as `ingot serve` does; `predict`
forwards the caller's raw REST body or PredictRequest, pinned to the variant's version
(ingot.gateway.forward), and decodes the answer only to log it (ingot.gateway.records). A
challenger that cannot be reached hands its request to the champion (assignment `fallback`); a
champion that cannot be reached is a 503. Mirroring (ingot.gateway.mirror) copies champion
requests to the challenger. Metadata and status are proxied (ingot.gateway.reads). An arm with
a `cascade` asks its small model first and keeps that answer when it is sure enough
(ingot.gateway.cascade; `x-ingot-answered-by`, the log's `answered_by`); the full model gets the
rest of the caller's deadline.

A predict the front end refuses after the variant was chosen (bad input, limits) is logged too:
the gateway registers `record_refused` as the front end's predict-error hook.

The log key is always the server's own request id (`x-ingot-request-id` on the answer); a
caller's id (`x-ingot-client-request-id`, or an `x-ingot-request-id` it sent) is kept beside it
as `client_request_id` and echoed. Each predict answer carries `x-ingot-feedback-key`, the HMAC
of the request id (ingot.gateway.keys) that feedback gives back. Rows are marked `evidence` only
when a randomised assignment chose the arm and its model answered (ingot.gateway.evidence); a
pin needs the table's pin token when it names one (403 / PERMISSION_DENIED otherwise).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from ingot.gateway.assignment import FALLBACK, HEADER, Assignment, should_mirror
from ingot.gateway.cascade import FULL, SMALL, CascadeRunner
from ingot.gateway.choose import Chooser, GatewayTarget, check_model
from ingot.gateway.classes import ClassCatalog
from ingot.gateway.evidence import is_evidence
from ingot.gateway.forward import down, forward
from ingot.gateway.keys import FeedbackKeys
from ingot.gateway.metrics import GatewayMetrics
from ingot.gateway.mirror import Mirror
from ingot.gateway.reads import Reads
from ingot.gateway.records import RequestRecorder, RequestState
from ingot.gateway.routing import CHALLENGER, CHAMPION, RoutingTable
from ingot.gateway.tokens import TokenFile
from ingot.gateway.upstream import UpstreamDown, UpstreamPool
from ingot.inference_log.records import new_request_id, valid_request_id
from ingot.protocol import headers as wire
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.signatures import SERVING_DEFAULT
from ingot.protocol.status import Code, ServingError, invalid_argument, not_found
from ingot.serving.backend import (
    GRPC,
    Backend,
    MetadataResult,
    PredictCall,
    PredictResult,
    RequestContext,
    StatusResult,
    Target,
)


class GatewayBackend(Backend):
    def __init__(
        self,
        table: Callable[[], RoutingTable],
        pool: UpstreamPool,
        *,
        sink: Any | None,
        metrics: GatewayMetrics,
        classes: ClassCatalog,
        default_timeout_s: float = 30.0,
        max_mirrors_in_flight: int = 32,
        max_mirror_bytes: int = 64 << 20,
        rng: random.Random | None = None,
        keys: FeedbackKeys | None = None,
        capture: Any | None = None,
    ) -> None:
        self._table = table
        self.keys = keys or FeedbackKeys.from_file(None)
        self.pin_tokens = TokenFile("the routing table's pin_token_file")
        self.pool = pool
        self.metrics = metrics
        self.default_timeout_s = default_timeout_s
        self._rng = rng or random.Random()
        self.chooser = Chooser(pool, metrics, self._rng)
        self.recorder = RequestRecorder(sink=sink, metrics=metrics, classes=classes, capture=capture)
        self.mirror = Mirror(pool, metrics, self.recorder, max_in_flight=max_mirrors_in_flight,
                             max_bytes_in_flight=max_mirror_bytes)
        self.reads = Reads(self.chooser, default_timeout_s)
        self.cascade = CascadeRunner(pool, metrics)

    def _state(self, ctx: RequestContext) -> RequestState:
        """This request's state, kept on its context from the first call on."""
        state = ctx.state
        if not isinstance(state, RequestState):
            state = ctx.state = RequestState(ctx.protocol, started=ctx.started)
        if not state.request_id:
            state.request_id = new_request_id()  # the log key is always the server's own
            caller = ctx.headers.get(wire.CLIENT_REQUEST_ID) or ctx.headers.get(wire.REQUEST_ID)
            if caller is not None and valid_request_id(caller):
                state.client_request_id = caller
            state.capture_off = (ctx.headers.get(wire.CAPTURE) or "").strip().lower() == "off"
        return state

    # ------------------------------------------------------------ predicting

    async def resolve(self, ctx: RequestContext, spec: ModelSpec) -> Target:
        table = self._table()
        state = self._state(ctx)
        state.predict = True
        state.cascadable = spec.version is None and spec.label is None  # a named version or label is never cascaded
        check_model(table, spec)
        chosen = await self.chooser.choose(table, ctx, spec)
        if chosen is None:  # TF Serving's own answers for what no variant serves
            if spec.version is not None:
                raise not_found(f"Servable not found for request: Specific({spec.name}, {spec.version})")
            raise invalid_argument(f"Unrecognized servable version label: {spec.label}")
        if chosen[1] == HEADER:
            self._check_pin(table, ctx)
        target = await self.chooser.target(table, *chosen)
        self._announce(ctx, state, target)
        return target  # type: ignore[return-value]  # a read-only Target

    def _check_pin(self, table: RoutingTable, ctx: RequestContext) -> None:
        """A caller-chosen arm (pin header, version or label) needs the pin token when the table
        names one; without a token file pins are honoured (local use)."""
        if table.pin_token_file and not self.pin_tokens.accepts(table.pin_token_file, ctx.headers.get(wire.PIN_TOKEN)):
            raise ServingError(Code.PERMISSION_DENIED,
                               f"choosing the variant ({wire.VARIANT}, a version or a version label) needs the "
                               f"pin token in {wire.PIN_TOKEN}; requests without a pin are assigned by the gateway")

    def _announce(self, ctx: RequestContext, state: RequestState, target: GatewayTarget) -> None:
        state.variant, state.how, state.version = target.variant, target.how, target.version
        ctx.response_headers[wire.REQUEST_ID] = state.request_id
        ctx.response_headers[wire.FEEDBACK_KEY] = self.keys.key(state.request_id)
        if state.client_request_id is not None:
            ctx.response_headers[wire.CLIENT_REQUEST_ID] = state.client_request_id
        ctx.response_headers[wire.VARIANT] = target.variant
        if target.version is not None:
            ctx.response_headers[wire.MODEL_VERSION] = str(target.version)
            if ctx.protocol != GRPC:
                ctx.response_headers[wire.REST_MODEL_VERSION] = str(target.version)

    async def predict(self, ctx: RequestContext, target: Any, call: PredictCall) -> PredictResult:
        table = self._table()
        state = self._state(ctx)
        state.signature = call.signature_name or SERVING_DEFAULT
        timeout = ctx.timeout_s or self.default_timeout_s
        cascade = table.cascades.get(target.variant) if state.cascadable else None
        if cascade is not None:
            asked = time.perf_counter()
            small = await self.cascade.try_small(table, cascade, target, call, timeout, state.request_id)
            timeout = max(timeout - (time.perf_counter() - asked), 0.001)  # the full model gets what is left
            self.cascade.count(table.model, target.variant, SMALL if small is not None else FULL)
            ctx.response_headers[wire.ANSWERED_BY] = state.answered_by = SMALL if small is not None else FULL
            if small is not None:
                return self._answered(ctx, table, state, small.target, call, timeout, small.forwarded,
                                      small.outputs, small.status)
        try:
            outcome = await forward(target, call, timeout, ctx.response_headers.get(wire.REQUEST_ID, ""))
        except UpstreamDown as err:
            if target.variant == CHALLENGER and target.how != HEADER:
                fallback = await self.chooser.fallback(table, target.spec)
                self._announce(ctx, state, fallback)
                target = fallback
                try:
                    outcome = await forward(target, call, timeout, ctx.response_headers.get(wire.REQUEST_ID, ""))
                except UpstreamDown as again:
                    raise self._failed(table, state, call, down(CHAMPION, again)) from None
            else:
                raise self._failed(table, state, call, down(target.variant, err)) from None
        except ServingError as err:
            raise self._failed(table, state, call, err) from None
        forwarded, outputs, status = outcome
        return self._answered(ctx, table, state, target, call, timeout, forwarded, outputs, status)

    def _answered(self, ctx: RequestContext, table: RoutingTable, state: RequestState, target: Any,
                  call: PredictCall, timeout: float, forwarded: Any, outputs: Any, status: str) -> PredictResult:
        """Log an upstream's answer, mirror it when due, and hand it back unchanged."""
        if target.version is not None:
            ctx.response_headers[wire.MODEL_VERSION] = str(target.version)
            if ctx.protocol != GRPC:
                ctx.response_headers[wire.REST_MODEL_VERSION] = str(target.version)
        self.recorder.record(table, state, call.inputs, outputs, status, variant=target.variant, how=target.how,
                             version=target.version, protocol=ctx.protocol,
                             evidence=is_evidence(table, target.how, status), answered_by=state.answered_by)
        if (status == "OK" and target.variant == CHAMPION and target.how != FALLBACK
                and should_mirror(table, Assignment(CHAMPION, target.how), self._rng)):
            self.mirror.send(table, call, timeout, ctx.protocol, state.request_id)
        return PredictResult(outputs, table.model, target.version, state.signature, forwarded=forwarded)

    def _failed(self, table: RoutingTable, state: RequestState, call: PredictCall, err: ServingError) -> ServingError:
        how = state.how or FALLBACK
        self.recorder.record(table, state, call.inputs, None, err.code.name, variant=state.variant or CHAMPION,
                             how=how, version=state.version, protocol=state.protocol,
                             evidence=is_evidence(table, how, err.code.name), answered_by=state.answered_by)
        return err

    def record_refused(self, ctx: RequestContext, status: str) -> None:
        """The front end's predict-error hook: a predict it refused after the variant was chosen
        (bad input, limits) gets its log row; one the backend already logged is left alone."""
        state = ctx.state
        if not isinstance(state, RequestState) or not state.predict or state.logged or state.variant is None:
            return
        self.recorder.record(self._table(), state, None, None, status, variant=state.variant,
                             how=state.how or HEADER, version=state.version, protocol=state.protocol)

    async def drain_mirrors(self, timeout_s: float) -> None:
        await self.mirror.drain(timeout_s)

    # ------------------------------------------------------------ metadata and status

    async def metadata(self, ctx: RequestContext, spec: ModelSpec) -> MetadataResult:
        table = self._table()
        check_model(table, spec)
        return await self.reads.metadata(table, ctx, spec, self._state(ctx).request_id)

    async def status(self, ctx: RequestContext, spec: ModelSpec) -> StatusResult:
        table = self._table()
        if spec.name != table.model:
            raise not_found(f"Could not find any versions of model {spec.name}")
        return await self.reads.status(table, ctx, spec, self._state(ctx).request_id)

    def readiness(self) -> dict[str, Any]:
        table = self._table()
        return {"ready": True, "model": table.model, "experiment": table.experiment,
                "variants": {v: u.version for v, u in table.upstreams.items()}}

    def list_models(self) -> list[dict[str, Any]]:
        table = self._table()
        return [{"name": table.model, "available_versions": sorted({u.version for u in table.upstreams.values()},
                                                                   reverse=True),
                 "labels": {v: u.version for v, u in table.upstreams.items()}}]
