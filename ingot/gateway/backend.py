"""The gateway's backend for the shared REST/gRPC front ends: choose a variant, forward to its
upstream over the same protocol, hand back the upstream's answer unchanged, and log every row.

Per request: `resolve` assigns the variant (pin header, sticky caller key, weighted random; a
`versions/N` or `labels/L` request goes to the variant serving N or L) and fetches that version's
signatures (cached) so the front end can check the inputs as `ingot serve` does; `predict`
forwards the caller's raw REST body or PredictRequest, pinned to the variant's version, and
decodes the answer only to log it. A challenger that cannot be reached hands its request to the
champion (assignment `fallback`); a champion that cannot be reached is a 503. Mirroring copies
champion requests to the challenger in background tasks that never delay the caller and are
dropped (counted) when too many are in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ingot.gateway.assignment import (
    FALLBACK,
    HEADER,
    MIRROR,
    Assignment,
    InvalidPin,
    assign,
    should_mirror,
)
from ingot.gateway.classes import ClassCatalog
from ingot.gateway.metrics import GatewayMetrics
from ingot.gateway.observe import (
    CLASS_IDS,
    CLASS_NAMES,
    PROBABILITIES,
    batch_size,
    input_facts,
    predictions,
)
from ingot.gateway.routing import CHALLENGER, CHAMPION, RoutingTable
from ingot.gateway.upstream import UpstreamClient, UpstreamDown, UpstreamPool, v1_path
from ingot.inference_log.records import LogRecord, new_request_id, valid_request_id
from ingot.protocol.signatures import SERVING_DEFAULT
from ingot.protocol.status import (
    Code,
    ServingError,
    code_from_grpc,
    code_from_http_status,
    invalid_argument,
    not_found,
)
from ingot.serving.backend import (
    GRPC,
    Backend,
    Forwarded,
    MetadataResult,
    ModelSpec,
    PredictCall,
    PredictResult,
    RequestContext,
    StatusResult,
    Target,
)

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-ingot-request-id"
VARIANT_HEADER = "x-ingot-variant"
VERSION_HEADER = "x-ingot-model-version"
SHADOW = "shadow"
LOGGED_OUTPUTS = (PROBABILITIES, CLASS_IDS, CLASS_NAMES)
LABEL_ALIASES = {CHAMPION: CHAMPION, CHALLENGER: CHALLENGER}


@dataclass
class RequestState:
    """What the gateway knows about one request, shared by the front-end wrapper and the backend
    (a context variable: each request runs in its own task)."""

    protocol: str
    started: float = field(default_factory=time.perf_counter)
    request_id: str = ""
    variant: str | None = None
    how: str | None = None
    version: int | None = None
    signature: str = SERVING_DEFAULT
    logged: bool = False
    predict: bool = False


CURRENT: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar("ingot_gateway_request", default=None)


@dataclass(frozen=True)
class GatewayTarget:
    """The variant chosen for one request: its upstream, version and signatures."""

    name: str
    version: int | None
    signatures: Mapping[str, Any]
    variant: str
    how: str
    client: UpstreamClient
    spec: ModelSpec  # what to ask the upstream for (pinned to the variant's version)

    def signature(self, name: str, *, rest: bool = False) -> Any:
        from ingot.protocol.tensors import find_signature

        return find_signature(self.signatures, name, rest=rest)


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
        self.sink = sink
        self.metrics = metrics
        self.classes = classes
        self.default_timeout_s = default_timeout_s
        self._rng = rng or random.Random()
        self._mirror_slots = max_mirrors_in_flight
        self._mirrors: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ choosing

    def _state(self, ctx: RequestContext) -> RequestState:
        state = CURRENT.get()
        if state is None:
            state = RequestState(ctx.protocol)
            CURRENT.set(state)
        if not state.request_id:
            caller = ctx.headers.get(REQUEST_ID_HEADER)
            state.request_id = caller if caller is not None and valid_request_id(caller) else new_request_id()
        return state

    def _check_model(self, table: RoutingTable, spec: ModelSpec) -> None:
        if spec.name != table.model:
            what = (f"Specific({spec.name}, {spec.version})" if spec.version is not None
                    else f"Latest({spec.name})")
            raise not_found(f"Servable not found for request: {what}")

    async def _choose(self, table: RoutingTable, ctx: RequestContext,
                      spec: ModelSpec) -> tuple[str, str, ModelSpec] | None:
        """(variant, assignment, the spec to send upstream: the variant's own version), or None
        for a version or label that neither variant serves."""
        if spec.version is not None:
            variant = table.variant_for_version(spec.version)
            return None if variant is None else (variant, HEADER, spec)
        if spec.label is not None:
            alias = LABEL_ALIASES.get(spec.label)
            if alias is not None and alias in table.upstreams:
                return alias, HEADER, ModelSpec(spec.name, table.upstreams[alias].version)
            for variant in (CHAMPION, CHALLENGER):
                upstream = table.upstreams.get(variant)
                if upstream is None:
                    continue
                try:
                    number = await self.pool.client(upstream).label_version(table.model, spec.label)
                except UpstreamDown:
                    continue
                if number == upstream.version:
                    return variant, HEADER, ModelSpec(spec.name, number)
            return None
        try:
            chosen: Assignment = assign(table, ctx.headers, self._rng)
        except InvalidPin as err:
            raise invalid_argument(str(err)) from None
        if chosen.variant == CHALLENGER and table.challenger is None:
            self.metrics.fallbacks.labels(table.model).inc()
            return CHAMPION, FALLBACK, ModelSpec(spec.name, table.champion.version)
        return chosen.variant, chosen.how, ModelSpec(spec.name, table.upstreams[chosen.variant].version)

    async def resolve(self, ctx: RequestContext, spec: ModelSpec) -> Target:
        table = self._table()
        state = self._state(ctx)
        state.predict = True
        self._check_model(table, spec)
        chosen = await self._choose(table, ctx, spec)
        if chosen is None:  # TF Serving's own answers for what no variant serves
            if spec.version is not None:
                raise not_found(f"Servable not found for request: Specific({spec.name}, {spec.version})")
            raise invalid_argument(f"Unrecognized servable version label: {spec.label}")
        target = await self._target(table, ctx, *chosen)
        self._announce(ctx, state, target)
        return target  # type: ignore[return-value]  # a read-only Target

    async def _target(self, table: RoutingTable, ctx: RequestContext, variant: str, how: str,
                      spec: ModelSpec) -> GatewayTarget:
        upstream = table.upstreams[variant]
        client = self.pool.client(upstream)
        may_fall_back = variant == CHALLENGER and how != HEADER
        if may_fall_back and client.looks_down:
            return await self._fallback(table, ctx, spec)
        try:
            signatures = await client.signatures(table.model, upstream.version)
        except UpstreamDown as err:
            if may_fall_back:
                return await self._fallback(table, ctx, spec)
            raise _down(variant, err) from None
        except Exception as err:  # noqa: BLE001 - the upstream's own error (e.g. version not loaded)
            raise _upstream_error(err) from None
        return GatewayTarget(table.model, upstream.version, signatures, variant, how, client,
                             ModelSpec(table.model, upstream.version))

    async def _fallback(self, table: RoutingTable, ctx: RequestContext, spec: ModelSpec) -> GatewayTarget:
        self.metrics.fallbacks.labels(table.model).inc()
        champion = ModelSpec(spec.name, table.champion.version)
        return await self._target(table, ctx, CHAMPION, FALLBACK, champion)

    def _announce(self, ctx: RequestContext, state: RequestState, target: GatewayTarget) -> None:
        state.variant, state.how, state.version = target.variant, target.how, target.version
        ctx.response_headers[REQUEST_ID_HEADER] = state.request_id
        ctx.response_headers[VARIANT_HEADER] = target.variant
        if target.version is not None:
            ctx.response_headers[VERSION_HEADER] = str(target.version)
            if ctx.protocol != GRPC:
                ctx.response_headers["X-Model-Version"] = str(target.version)

    # ------------------------------------------------------------ predicting

    async def predict(self, ctx: RequestContext, target: Any, call: PredictCall) -> PredictResult:
        table = self._table()
        state = self._state(ctx)
        state.signature = call.signature_name or SERVING_DEFAULT
        timeout = ctx.timeout_s or self.default_timeout_s
        try:
            outcome = await self._forward(table, target, call, timeout, ctx)
        except UpstreamDown as err:
            if target.variant == CHALLENGER and target.how != HEADER:
                fallback = await self._fallback(table, ctx, target.spec)
                self._announce(ctx, state, fallback)
                target = fallback
                try:
                    outcome = await self._forward(table, target, call, timeout, ctx)
                except UpstreamDown as again:
                    raise self._failed(table, state, call, _down(CHAMPION, again)) from None
            else:
                raise self._failed(table, state, call, _down(target.variant, err)) from None
        except ServingError as err:
            raise self._failed(table, state, call, err) from None
        forwarded, outputs, status = outcome
        self.record(table, state, call.inputs, outputs, status, variant=target.variant, how=target.how,
                    version=target.version, protocol=ctx.protocol)
        if (status == "OK" and target.variant == CHAMPION and target.how != FALLBACK
                and should_mirror(table, Assignment(CHAMPION, target.how), self._rng)):
            self._mirror(table, call, timeout, ctx.protocol, state.request_id)
        return PredictResult(outputs, table.model, target.version, state.signature, forwarded=forwarded)

    def _failed(self, table: RoutingTable, state: RequestState, call: PredictCall, err: ServingError) -> ServingError:
        self.record(table, state, call.inputs, None, err.code.name, variant=state.variant or CHAMPION,
                    how=state.how or FALLBACK, version=state.version, protocol=state.protocol)
        return err

    async def _forward(self, table: RoutingTable, target: GatewayTarget, call: PredictCall, timeout: float,
                       ctx: RequestContext | None) -> tuple[Forwarded, dict[str, np.ndarray] | None, str]:
        """(answer to return unchanged, decoded outputs for the log, status name)."""
        headers = {REQUEST_ID_HEADER: ctx.response_headers.get(REQUEST_ID_HEADER, "")} if ctx else {}
        if call.grpc_request is None:
            path = v1_path(table.model, version=target.spec.version, label=target.spec.label, suffix=":predict")
            try:
                status, body = await target.client.rest("POST", path, call.body, timeout, headers)
            except TimeoutError:
                raise ServingError(Code.DEADLINE_EXCEEDED, f"Deadline exceeded: the {target.variant} did not answer "
                                   f"within {timeout * 1000:.0f} ms") from None
            outputs = _rest_outputs(body) if status == 200 else None
            name = "OK" if status == 200 else code_from_http_status(status).name
            return Forwarded(status=status, body=body), outputs, name
        import grpc

        request = type(call.grpc_request)()
        request.CopyFrom(call.grpc_request)
        request.model_spec.name = table.model
        if target.spec.version is not None:
            request.model_spec.version.value = target.spec.version
        elif target.spec.label is not None:
            request.model_spec.version_label = target.spec.label
        try:
            response = await target.client.grpc(target.client.predictions.Predict, request, timeout,
                                                tuple(headers.items()))
        except grpc.aio.AioRpcError as err:
            raise ServingError(code_from_grpc(err.code()), err.details() or "") from None
        outputs = _grpc_outputs(response)
        return Forwarded(message=response), outputs, "OK"

    # ------------------------------------------------------------ mirroring

    def _mirror(self, table: RoutingTable, call: PredictCall, timeout: float, protocol: str, request_id: str) -> None:
        if len(self._mirrors) >= self._mirror_slots:
            self.metrics.mirrors.labels(table.model, "dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._shadow(table, call, timeout, protocol, request_id))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

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
            _answer, outputs, status = await self._forward(table, target, call, timeout, None)
            outcome = "sent"
        except UpstreamDown:
            outputs, status, outcome = None, Code.UNAVAILABLE.name, "failed"
        except ServingError as err:
            outputs, status, outcome = None, err.code.name, "failed"
        except Exception as err:  # noqa: BLE001 - a shadow request must never surface anywhere
            log.warning("mirror request failed: %s", err)
            outputs, status, outcome = None, Code.INTERNAL.name, "failed"
        self.metrics.mirrors.labels(table.model, outcome).inc()
        self.record(table, state, call.inputs, outputs, status, variant=SHADOW, how=MIRROR,
                    version=challenger.version, protocol=protocol, count=False)

    async def drain_mirrors(self, timeout_s: float) -> None:
        if self._mirrors:
            await asyncio.wait(list(self._mirrors), timeout=timeout_s)

    # ------------------------------------------------------------ logging

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
            ))
        self.sink.submit(records)

    def record_front_end_error(self, state: RequestState, status: str) -> None:
        """A predict the front end refused after the variant was chosen (bad input, limits)."""
        if not state.predict or state.logged or state.variant is None:
            return
        self.record(self._table(), state, None, None, status, variant=state.variant, how=state.how or HEADER,
                    version=state.version, protocol=state.protocol)

    # ------------------------------------------------------------ metadata and status

    async def metadata(self, ctx: RequestContext, spec: ModelSpec) -> MetadataResult:
        table = self._table()
        self._check_model(table, spec)
        variant, _how, upstream_spec = await self._choose_for_reading(table, ctx, spec)
        client = self.pool.client(table.upstreams[variant])
        self._reading_headers(ctx, variant, _served_version(table, variant, upstream_spec))
        if ctx.protocol == GRPC:
            from tensorflow_serving.apis import get_model_metadata_pb2

            request = get_model_metadata_pb2.GetModelMetadataRequest()
            _fill_spec(request.model_spec, upstream_spec)
            request.metadata_field.append("signature_def")
            return MetadataResult(forwarded=Forwarded(message=await self._grpc_read(
                client, client.predictions.GetModelMetadata, request, variant, ctx)))
        path = v1_path(table.model, version=upstream_spec.version, label=upstream_spec.label, suffix="/metadata")
        return MetadataResult(forwarded=await self._rest_read(client, path, variant, ctx))

    async def status(self, ctx: RequestContext, spec: ModelSpec) -> StatusResult:
        table = self._table()
        if spec.name != table.model:
            raise not_found(f"Could not find any versions of model {spec.name}")
        if spec.version is None and spec.label is None:
            variant, upstream_spec = CHAMPION, spec  # the champion's server lists what it has
        else:
            variant, _how, upstream_spec = await self._choose_for_reading(table, ctx, spec)
        client = self.pool.client(table.upstreams[variant])
        self._reading_headers(ctx, variant, _served_version(table, variant, upstream_spec))
        if ctx.protocol == GRPC:
            from tensorflow_serving.apis import get_model_status_pb2

            request = get_model_status_pb2.GetModelStatusRequest()
            _fill_spec(request.model_spec, upstream_spec)
            return StatusResult(forwarded=Forwarded(message=await self._grpc_read(
                client, client.models.GetModelStatus, request, variant, ctx)))
        path = v1_path(table.model, version=upstream_spec.version, label=upstream_spec.label)
        return StatusResult(forwarded=await self._rest_read(client, path, variant, ctx, method="GET"))

    async def _choose_for_reading(self, table: RoutingTable, ctx: RequestContext,
                                  spec: ModelSpec) -> tuple[str, str, ModelSpec]:
        """Metadata and status: the pinned variant (default the champion); a version or label no
        variant serves goes to the champion's server as asked, which answers as it would."""
        if spec.version is None and spec.label is None:
            pin = (ctx.headers.get(VARIANT_HEADER) or "").strip().lower()
            variant = pin if pin in table.upstreams else CHAMPION
            return variant, HEADER, ModelSpec(spec.name, table.upstreams[variant].version)
        chosen = await self._choose(table, ctx, spec)
        return chosen if chosen is not None else (CHAMPION, HEADER, spec)

    def _reading_headers(self, ctx: RequestContext, variant: str, version: int | None) -> None:
        state = self._state(ctx)
        ctx.response_headers[REQUEST_ID_HEADER] = state.request_id
        ctx.response_headers[VARIANT_HEADER] = variant
        if version is not None:
            ctx.response_headers[VERSION_HEADER] = str(version)

    async def _grpc_read(self, client: UpstreamClient, method: Any, request: Any, variant: str,
                         ctx: RequestContext) -> Any:
        import grpc

        try:
            return await client.grpc(method, request, ctx.timeout_s or self.default_timeout_s)
        except UpstreamDown as err:
            raise _down(variant, err) from None
        except grpc.aio.AioRpcError as err:
            raise ServingError(code_from_grpc(err.code()), err.details() or "") from None

    async def _rest_read(self, client: UpstreamClient, path: str, variant: str, ctx: RequestContext,
                         method: str = "GET") -> Forwarded:
        try:
            status, body = await client.rest(method, path, None, ctx.timeout_s or self.default_timeout_s)
        except UpstreamDown as err:
            raise _down(variant, err) from None
        except TimeoutError:
            raise ServingError(Code.DEADLINE_EXCEEDED, f"Deadline exceeded waiting for the {variant}") from None
        return Forwarded(status=status, body=body)

    def readiness(self) -> dict[str, Any]:
        table = self._table()
        return {"ready": True, "model": table.model, "experiment": table.experiment,
                "variants": {v: u.version for v, u in table.upstreams.items()}}

    def list_models(self) -> list[dict[str, Any]]:
        table = self._table()
        return [{"name": table.model, "available_versions": sorted({u.version for u in table.upstreams.values()},
                                                                   reverse=True),
                 "labels": {v: u.version for v, u in table.upstreams.items()}}]


def _served_version(table: RoutingTable, variant: str, spec: ModelSpec) -> int | None:
    """The version a read answers about, when it is the variant's own."""
    version = table.upstreams[variant].version
    return version if spec.version == version else None


def _fill_spec(proto: Any, spec: ModelSpec) -> None:
    proto.name = spec.name
    if spec.version is not None:
        proto.version.value = spec.version
    elif spec.label is not None:
        proto.version_label = spec.label


def _down(variant: str, err: BaseException) -> ServingError:
    return ServingError(Code.UNAVAILABLE, f"the {variant} model server is unreachable: {err}")


def _upstream_error(err: BaseException) -> ServingError:
    import grpc

    if isinstance(err, grpc.aio.AioRpcError):
        return ServingError(code_from_grpc(err.code()), err.details() or "")
    if isinstance(err, ServingError):
        return err
    return ServingError(Code.INTERNAL, f"upstream answered unexpectedly: {type(err).__name__}: {err}")


def _rest_outputs(body: bytes) -> dict[str, np.ndarray] | None:
    """The logged outputs of a TF Serving REST predict answer (row or columnar form)."""
    import orjson

    from ingot.protocol.rest_json import array_from_json

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    if "predictions" in doc:
        rows = doc["predictions"]
        if not isinstance(rows, list) or not rows:
            return None
        if isinstance(rows[0], dict):
            return {name: array_from_json(name, [row.get(name) for row in rows])
                    for name in LOGGED_OUTPUTS if name in rows[0]}
        return {PROBABILITIES: array_from_json(PROBABILITIES, rows)}
    outputs = doc.get("outputs")
    if isinstance(outputs, dict):
        return {name: array_from_json(name, outputs[name]) for name in LOGGED_OUTPUTS if name in outputs}
    if isinstance(outputs, list):
        return {PROBABILITIES: array_from_json(PROBABILITIES, outputs)}
    return None


def _grpc_outputs(response: Any) -> dict[str, np.ndarray]:
    from ingot.protocol.tensors import array_from_proto

    return {name: array_from_proto(name, response.outputs[name], None, max_elements=1 << 26)
            for name in LOGGED_OUTPUTS if name in response.outputs}
