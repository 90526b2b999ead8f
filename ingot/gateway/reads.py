"""Model metadata and status through the gateway: asked of the pinned variant's upstream (the
champion by default; a version or label goes to the variant serving it) and returned unchanged."""

from __future__ import annotations

from typing import Any

from ingot.gateway.assignment import HEADER
from ingot.gateway.choose import Chooser
from ingot.gateway.forward import down, grpc_error
from ingot.gateway.routing import CHAMPION, RoutingTable
from ingot.gateway.upstream import UpstreamClient, UpstreamDown
from ingot.protocol import headers as wire
from ingot.protocol.documents import SIGNATURE_DEF_FIELD
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.status import Code, ServingError
from ingot.serving.backend import GRPC, Forwarded, MetadataResult, RequestContext, StatusResult


class Reads:
    def __init__(self, chooser: Chooser, default_timeout_s: float) -> None:
        self.chooser = chooser
        self.default_timeout_s = default_timeout_s

    async def metadata(self, table: RoutingTable, ctx: RequestContext, spec: ModelSpec,
                       request_id: str) -> MetadataResult:
        variant, _how, upstream_spec = await self._choose(table, ctx, spec)
        client = self.chooser.pool.client(table.upstreams[variant])
        _headers(ctx, request_id, variant, _served_version(table, variant, upstream_spec))
        if ctx.protocol == GRPC:
            from tensorflow_serving.apis import get_model_metadata_pb2

            request = get_model_metadata_pb2.GetModelMetadataRequest()
            upstream_spec.fill(request.model_spec)
            request.metadata_field.append(SIGNATURE_DEF_FIELD)
            return MetadataResult(forwarded=Forwarded(message=await self._grpc(
                client, client.predictions.GetModelMetadata, request, variant, ctx)))
        return MetadataResult(forwarded=await self._rest(client, upstream_spec.path("/metadata"), variant, ctx))

    async def status(self, table: RoutingTable, ctx: RequestContext, spec: ModelSpec,
                     request_id: str) -> StatusResult:
        if spec.version is None and spec.label is None:
            variant, upstream_spec = CHAMPION, spec  # the champion's server lists what it has
        else:
            variant, _how, upstream_spec = await self._choose(table, ctx, spec)
        client = self.chooser.pool.client(table.upstreams[variant])
        _headers(ctx, request_id, variant, _served_version(table, variant, upstream_spec))
        if ctx.protocol == GRPC:
            from tensorflow_serving.apis import get_model_status_pb2

            request = get_model_status_pb2.GetModelStatusRequest()
            upstream_spec.fill(request.model_spec)
            return StatusResult(forwarded=Forwarded(message=await self._grpc(
                client, client.models.GetModelStatus, request, variant, ctx)))
        return StatusResult(forwarded=await self._rest(client, upstream_spec.path(), variant, ctx))

    async def _choose(self, table: RoutingTable, ctx: RequestContext, spec: ModelSpec) -> tuple[str, str, ModelSpec]:
        """The pinned variant (default the champion); a version or label no variant serves goes
        to the champion's server as asked, which answers as it would."""
        if spec.version is None and spec.label is None:
            pin = (ctx.headers.get(wire.VARIANT) or "").strip().lower()
            variant = pin if pin in table.upstreams else CHAMPION
            return variant, HEADER, ModelSpec(spec.name, table.upstreams[variant].version)
        chosen = await self.chooser.choose(table, ctx, spec)
        return chosen if chosen is not None else (CHAMPION, HEADER, spec)

    async def _grpc(self, client: UpstreamClient, method: Any, request: Any, variant: str,
                    ctx: RequestContext) -> Any:
        import grpc

        try:
            return await client.grpc(method, request, ctx.timeout_s or self.default_timeout_s)
        except UpstreamDown as err:
            raise down(variant, err) from None
        except grpc.aio.AioRpcError as err:
            raise grpc_error(err) from None

    async def _rest(self, client: UpstreamClient, path: str, variant: str, ctx: RequestContext) -> Forwarded:
        try:
            status, body = await client.rest("GET", path, None, ctx.timeout_s or self.default_timeout_s)
        except UpstreamDown as err:
            raise down(variant, err) from None
        except TimeoutError:
            raise ServingError(Code.DEADLINE_EXCEEDED, f"Deadline exceeded waiting for the {variant}") from None
        return Forwarded(status=status, body=body)


def _headers(ctx: RequestContext, request_id: str, variant: str, version: int | None) -> None:
    ctx.response_headers[wire.REQUEST_ID] = request_id
    ctx.response_headers[wire.VARIANT] = variant
    if version is not None:
        ctx.response_headers[wire.MODEL_VERSION] = str(version)


def _served_version(table: RoutingTable, variant: str, spec: ModelSpec) -> int | None:
    """The version a read answers about, when it is the variant's own."""
    version = table.upstreams[variant].version
    return version if spec.version == version else None
