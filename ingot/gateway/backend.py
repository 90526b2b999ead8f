"""The gateway's backend for the shared REST/gRPC front ends: choose a variant, forward to its
upstream over the same protocol, hand back the upstream's answer unchanged, and log every row.

Per request: `resolve` assigns the variant (ingot.gateway.choose) and fetches that version's
signatures (cached) so the front end can check the inputs as `ingot serve` does; `predict`
forwards the caller's raw REST body or PredictRequest, pinned to the variant's version
(ingot.gateway.forward), and decodes the answer only to log it (ingot.gateway.records). A
challenger that cannot be reached hands its request to the champion (assignment `fallback`); past
that, the routing table's fallback chain (ingot.gateway.chain for the upstream steps, each behind
a breaker; `cached` and `default` here), bounded by `deadline_ms`, marks every answer it gives
with `x-ingot-degraded`; with no chain a champion that cannot be reached is a 503. With a cache
URL and a model's `cache:` block, answers come from and go to Redis (ingot.gateway.cache). Mirroring (ingot.gateway.mirror) copies champion
requests to the challenger. Metadata and status are proxied (ingot.gateway.reads). An arm with
a `cascade` asks its small model first and keeps that answer when it is sure enough
(ingot.gateway.cascade; `x-ingot-answered-by`, the log's `answered_by`); the full model gets the
rest of the deadline.

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

from ingot.gateway import chain
from ingot.gateway.assignment import FALLBACK, HEADER, Assignment, should_mirror
from ingot.gateway.cache import PredictionCache, cached_answer, request_key
from ingot.gateway.cascade import FULL, SMALL, CascadeRunner
from ingot.gateway.chain import UPSTREAM_FAILURES
from ingot.gateway.choose import Chooser, GatewayTarget, check_model
from ingot.gateway.classes import ClassCatalog
from ingot.gateway.evidence import is_evidence
from ingot.gateway.fallback import CACHED, DEFAULT, OTHER_ARM, default_answer
from ingot.gateway.forward import down
from ingot.gateway.keys import FeedbackKeys
from ingot.gateway.metrics import GatewayMetrics
from ingot.gateway.mirror import Mirror
from ingot.gateway.observe import batch_size
from ingot.gateway.reads import Reads
from ingot.gateway.records import RequestRecorder, RequestState
from ingot.gateway.routing import CHAMPION, RoutingTable
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


class _Degrade(Exception):
    """The model servers failed and the table's fallback chain goes on past them."""

    def __init__(self, error: ServingError) -> None:
        super().__init__(error.message if hasattr(error, "message") else str(error))
        self.error = error


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
        self.cache: PredictionCache | None = None  # set by the server when --cache-url is given
        self._known: dict[tuple[str, int | None], Any] = {}  # signatures last seen per version
        self.breakers = chain.Breakers()  # one per upstream address (ingot.gateway.chain)

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
        try:
            target = await self.chooser.target(table, *chosen)
        except ServingError as err:
            target = self._last_known(table, chosen, err)
        self._known[(table.model, target.version)] = target.signatures
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
        if table.resilience.deadline_ms is not None:  # bounds the whole chain
            timeout = min(timeout, table.resilience.deadline_ms / 1000.0)
        policy = table.resilience.cache
        key = None
        if self.cache is not None and policy is not None and target.version is not None:
            key = request_key(table.model, target.version, call, ctx.protocol)
            hit = await self.cache.get(key)
            ctx.response_headers[wire.CACHE] = "hit" if hit is not None else "miss"
            if hit is not None:
                state.cache_hit = True
                forwarded_hit, hit_outputs = cached_answer(hit, call)
                # The arm's own answer (accuracy evidence as any other); the recorder keeps it out of latency.
                self.recorder.record(table, state, call.inputs, hit_outputs, "OK", variant=target.variant,
                                     how=target.how, version=target.version, protocol=ctx.protocol,
                                     evidence=is_evidence(table, target.how, "OK"))
                return PredictResult(hit_outputs, table.model, target.version, state.signature, forwarded=forwarded_hit)
        deadline = time.perf_counter() + timeout
        if table.resilience.deadline_ms is not None:  # counted from the request's arrival
            deadline = min(deadline, ctx.started + table.resilience.deadline_ms / 1000.0)
        cascade = table.cascades.get(target.variant) if state.cascadable else None
        if cascade is not None:
            small = await self.cascade.try_small(table, cascade, target, call,
                                                 max(deadline - time.perf_counter(), 0.001), state.request_id)
            self.cascade.count(table.model, target.variant, SMALL if small is not None else FULL)
            ctx.response_headers[wire.ANSWERED_BY] = state.answered_by = SMALL if small is not None else FULL
            if small is not None:  # not cached: the cache keys the arm's full version
                return self._answered(ctx, table, state, small.target, call, timeout, small.forwarded,
                                      small.outputs, small.status, key=None, reason=None)
        try:
            target, outcome, reason = await self._upstreams(ctx, table, state, target, call, deadline)
        except _Degrade as chain:
            return await self._degraded(ctx, table, state, target, call, key, chain.error)
        forwarded, outputs, status = outcome
        return self._answered(ctx, table, state, target, call, timeout, forwarded, outputs, status,
                              key=key, reason=reason)

    def _answered(self, ctx: RequestContext, table: RoutingTable, state: RequestState, target: Any,
                  call: PredictCall, timeout: float, forwarded: Any, outputs: Any, status: str, *,
                  key: str | None, reason: str | None) -> PredictResult:
        """Log an upstream's answer (degraded when another model gave it), cache it, mirror it
        when due, and hand it back unchanged."""
        if target.version is not None:
            ctx.response_headers[wire.MODEL_VERSION] = str(target.version)
            if ctx.protocol != GRPC:
                ctx.response_headers[wire.REST_MODEL_VERSION] = str(target.version)
        if reason is None and target.how == FALLBACK:  # handed to the champion when resolved
            reason = OTHER_ARM
        if reason is not None:  # not the assigned model's own answer
            state.degraded = ctx.response_headers[wire.DEGRADED] = reason
            ctx.trailing.add(wire.DEGRADED)
        policy = table.resilience.cache
        if key is not None and policy is not None and self.cache is not None and status == "OK" \
                and target.how != FALLBACK:
            self.cache.store_later(key, forwarded, policy)
        self.recorder.record(table, state, call.inputs, outputs, status, variant=target.variant, how=target.how,
                             version=target.version, protocol=ctx.protocol,
                             evidence=is_evidence(table, target.how, status), answered_by=state.answered_by)
        if (status == "OK" and target.variant == CHAMPION and target.how != FALLBACK
                and should_mirror(table, Assignment(CHAMPION, target.how), self._rng)):
            self.mirror.send(table, call, timeout, ctx.protocol, state.request_id)
        return PredictResult(outputs, table.model, target.version, state.signature, forwarded=forwarded)

    async def _upstreams(self, ctx: RequestContext, table: RoutingTable, state: RequestState, target: GatewayTarget,
                         call: PredictCall, deadline: float) -> tuple[GatewayTarget, Any, str | None]:
        """(target that answered, its outcome, degraded reason) down the upstream steps
        (ingot.gateway.chain); _Degrade or the logged error when none answers."""
        request_id = ctx.response_headers.get(wire.REQUEST_ID, "")
        error: ServingError | None = None
        for step in chain.steps(table, self.chooser, self.pool, target):
            try:
                candidate = await step.target()
                if step.reason is not None:
                    self._announce(ctx, state, candidate)
                outcome = await chain.send(self.breakers, table.resilience.breaker, candidate, call, deadline,
                                           request_id)
                return candidate, outcome, step.reason
            except UpstreamDown as err:
                error = down(state.variant or CHAMPION, err)
            except ServingError as err:
                if err.code not in UPSTREAM_FAILURES:
                    raise self._failed(table, state, call, err) from None
                error = err
                if not step.any_failure:
                    break
        assert error is not None
        raise self._chain_or_fail(table, state, call, error)

    def _last_known(self, table: RoutingTable, chosen: Any, err: ServingError) -> GatewayTarget:
        """A model server down at resolve time: with a fallback chain, the request goes on with the
        signatures last seen for that version (its forward then fails and the chain answers);
        otherwise, or with none seen, the error stands."""
        variant, how, spec = chosen
        signatures = self._known.get((table.model, spec.version))
        if err.code not in UPSTREAM_FAILURES or signatures is None or not table.resilience.fallback:
            raise err
        upstream = table.upstreams[variant]
        return GatewayTarget(table.model, upstream.version, signatures, variant, how, self.pool.client(upstream),
                             ModelSpec(table.model, upstream.version))

    def _chain_or_fail(self, table: RoutingTable, state: RequestState, call: PredictCall,
                       err: ServingError) -> Exception:
        """With `cached` or `default` in the table's fallback chain, hand on to the chain; else log and fail."""
        if {CACHED, DEFAULT} & set(table.resilience.fallback):
            return _Degrade(err)
        return self._failed(table, state, call, err)

    async def _degraded(self, ctx: RequestContext, table: RoutingTable, state: RequestState, target: Any,
                        call: PredictCall, key: str | None, err: ServingError) -> PredictResult:
        """The fallback chain past the model servers: the stale cached answer, then the default.
        Each answer says why in x-ingot-degraded and is logged with that reason."""
        policy = table.resilience
        for step in policy.fallback:
            answer = None
            if step == CACHED and self.cache is not None and key is not None:
                stale = await self.cache.get_stale(key)
                if stale is not None:
                    answer = cached_answer(stale, call)
            elif step == DEFAULT and policy.default_class_id is not None:
                answer = default_answer(policy.default_class_id, batch_size(call.inputs), call)
            if answer is None:
                continue
            forwarded, outputs = answer
            if step == CACHED:  # the assigned version's answer, whatever upstream was tried last
                self._announce(ctx, state, target)
            else:  # no model version produced the default answer
                for name in (wire.MODEL_VERSION, wire.REST_MODEL_VERSION):
                    ctx.response_headers.pop(name, None)
            state.degraded = step
            ctx.response_headers[wire.DEGRADED] = step
            ctx.trailing.add(wire.DEGRADED)
            self.recorder.record(table, state, call.inputs, outputs, "OK", variant=state.variant or CHAMPION,
                                 how=state.how or FALLBACK, version=target.version if step == CACHED else None,
                                 protocol=ctx.protocol)
            return PredictResult(outputs, table.model, target.version if step == CACHED else None, state.signature,
                                 forwarded=forwarded)
        raise self._failed(table, state, call, err)

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
