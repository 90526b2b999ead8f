"""The gateway's backend for the shared REST/gRPC front ends: choose a variant, forward to its
upstream over the same protocol, hand back the upstream's answer unchanged, and log every row.

Per request: `resolve` assigns the variant (ingot.gateway.choose) and fetches that version's
signatures (cached) so the front end can check the inputs as `ingot serve` does; `predict`
forwards the caller's raw REST body or PredictRequest, pinned to the variant's version
(ingot.gateway.forward), and decodes the answer only to log it (ingot.gateway.records). A
challenger that cannot be reached hands its request to the champion (assignment `fallback`); a
champion that cannot be reached is a 503. Mirroring (ingot.gateway.mirror) copies champion
requests to the challenger. Metadata and status are proxied (ingot.gateway.reads).

A predict the front end refuses after the variant was chosen (bad input, limits) is logged too:
the gateway registers `record_refused` as the front end's predict-error hook.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from ingot.gateway.assignment import FALLBACK, HEADER, Assignment, should_mirror
from ingot.gateway.cache import PredictionCache, cached_answer, request_key
from ingot.gateway.choose import Chooser, GatewayTarget, check_model
from ingot.gateway.classes import ClassCatalog
from ingot.gateway.forward import down, forward
from ingot.gateway.metrics import GatewayMetrics
from ingot.gateway.mirror import Mirror
from ingot.gateway.reads import Reads
from ingot.gateway.records import RequestRecorder, RequestState
from ingot.gateway.routing import CHALLENGER, CHAMPION, RoutingTable
from ingot.gateway.upstream import UpstreamDown, UpstreamPool
from ingot.inference_log.records import new_request_id, valid_request_id
from ingot.protocol import headers as wire
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.signatures import SERVING_DEFAULT
from ingot.protocol.status import ServingError, invalid_argument, not_found
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
        rng: random.Random | None = None,
    ) -> None:
        self._table = table
        self.pool = pool
        self.metrics = metrics
        self.default_timeout_s = default_timeout_s
        self._rng = rng or random.Random()
        self.chooser = Chooser(pool, metrics, self._rng)
        self.recorder = RequestRecorder(sink=sink, metrics=metrics, classes=classes)
        self.mirror = Mirror(pool, metrics, self.recorder, max_in_flight=max_mirrors_in_flight)
        self.reads = Reads(self.chooser, default_timeout_s)
        self.cache: PredictionCache | None = None  # set by the server when --cache-url is given

    def _state(self, ctx: RequestContext) -> RequestState:
        """This request's state, kept on its context from the first call on."""
        state = ctx.state
        if not isinstance(state, RequestState):
            state = ctx.state = RequestState(ctx.protocol, started=ctx.started)
        if not state.request_id:
            caller = ctx.headers.get(wire.REQUEST_ID)
            state.request_id = caller if caller is not None and valid_request_id(caller) else new_request_id()
        return state

    # ------------------------------------------------------------ predicting

    async def resolve(self, ctx: RequestContext, spec: ModelSpec) -> Target:
        table = self._table()
        state = self._state(ctx)
        state.predict = True
        check_model(table, spec)
        chosen = await self.chooser.choose(table, ctx, spec)
        if chosen is None:  # TF Serving's own answers for what no variant serves
            if spec.version is not None:
                raise not_found(f"Servable not found for request: Specific({spec.name}, {spec.version})")
            raise invalid_argument(f"Unrecognized servable version label: {spec.label}")
        target = await self.chooser.target(table, *chosen)
        self._announce(ctx, state, target)
        return target  # type: ignore[return-value]  # a read-only Target

    def _announce(self, ctx: RequestContext, state: RequestState, target: GatewayTarget) -> None:
        state.variant, state.how, state.version = target.variant, target.how, target.version
        ctx.response_headers[wire.REQUEST_ID] = state.request_id
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
        policy = table.resilience.cache
        key = None
        if self.cache is not None and policy is not None and target.version is not None:
            key = request_key(table.model, target.version, call, ctx.protocol)
            hit = await self.cache.get(key)
            ctx.response_headers[wire.CACHE] = "hit" if hit is not None else "miss"
            if hit is not None:
                state.cache_hit = True
                forwarded_hit, hit_outputs = cached_answer(hit, call)
                self.recorder.record(table, state, call.inputs, hit_outputs, "OK", variant=target.variant,
                                     how=target.how, version=target.version, protocol=ctx.protocol)
                return PredictResult(hit_outputs, table.model, target.version, state.signature, forwarded=forwarded_hit)
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
        if key is not None and policy is not None and self.cache is not None and status == "OK" \
                and target.how != FALLBACK:
            self.cache.store_later(key, forwarded, policy)
        self.recorder.record(table, state, call.inputs, outputs, status, variant=target.variant, how=target.how,
                             version=target.version, protocol=ctx.protocol)
        if (status == "OK" and target.variant == CHAMPION and target.how != FALLBACK
                and should_mirror(table, Assignment(CHAMPION, target.how), self._rng)):
            self.mirror.send(table, call, timeout, ctx.protocol, state.request_id)
        return PredictResult(outputs, table.model, target.version, state.signature, forwarded=forwarded)

    def _failed(self, table: RoutingTable, state: RequestState, call: PredictCall, err: ServingError) -> ServingError:
        self.recorder.record(table, state, call.inputs, None, err.code.name, variant=state.variant or CHAMPION,
                             how=state.how or FALLBACK, version=state.version, protocol=state.protocol)
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
