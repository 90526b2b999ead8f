"""TF Serving's REST API on aiohttp (routes, status codes and bodies as in
model_servers/http_rest_api_handler.cc), plus Kubernetes probes and Prometheus metrics.

aiohttp because it is already a pinned dependency, runs on the same event loop as grpc.aio (one
process, one loop, no extra threads for I/O) and enforces a body size limit before reading.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from ingot.protocol.documents import metadata_document, status_json
from ingot.protocol.rest_json import dumps, error_body, parse_predict_request, predict_response
from ingot.protocol.routes import V1Route, parse_v1_path
from ingot.protocol.status import Code, ServingError, code_from_http_status
from ingot.serving.backend import REST, ModelSpec, PredictCall, RequestContext
from ingot.serving.frontend import FrontEnd

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
PARSE_IN_THREAD_BYTES = 256 << 10


def _json_response(body: bytes, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON_TYPE, headers=headers)


def _error_response(err: ServingError) -> web.Response:
    return _json_response(error_body(err.message), err.http_status)


def _forwarded_response(status: int, body: bytes | None, headers: dict[str, str]) -> web.Response:
    return web.Response(body=body or b"", status=status, content_type=JSON_TYPE, headers=headers or None)


class RestApi:
    def __init__(self, front: FrontEnd, *, metrics_path: str | None, timeout_s: float | None) -> None:
        self.front = front
        self.backend = front.backend
        self.metrics_path = metrics_path
        self.timeout_s = timeout_s

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.front.limits.max_body_bytes)
        app.router.add_route("*", "/v1/{tail:.*}", self.handle_v1)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/ingot/models", self.list_models)
        if self.metrics_path:
            app.router.add_get(self.metrics_path, self.prometheus)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.front.limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ServingError(
                Code.RESOURCE_EXHAUSTED,
                f"Request body of {request.content_length} bytes exceeds the limit of {limit} bytes",
                http_status=413,
            )
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ServingError(
                Code.RESOURCE_EXHAUSTED, f"Request body exceeds the limit of {limit} bytes", http_status=413
            ) from None

    def _context(self, request: web.Request) -> RequestContext:
        headers = {k.lower(): v for k, v in request.headers.items()}
        return RequestContext(REST, headers, self.front.timeout_s(self.timeout_s))

    async def handle_v1(self, request: web.Request) -> web.Response:
        front = self.front
        model_name, version, api = "", None, ""
        ctx = self._context(request)
        with front.track() as tracking:
            try:
                route = parse_v1_path(request.method, request.rel_url.raw_path)
                model_name = route.model_name
                spec = ModelSpec(route.model_name, route.version, route.label)
                api = route.kind if route.kind in ("predict", "classify", "regress") else ""
                if route.kind == "predict":
                    response, version, status_name = await self._predict(request, route, ctx)
                elif route.kind in ("classify", "regress"):
                    raise ServingError(
                        Code.UNIMPLEMENTED,
                        f"{route.kind} is not supported by Ingot's model server; use :predict "
                        "(the image signatures return probabilities and class ids)",
                    )
                elif route.kind == "metadata":
                    meta = await self.backend.metadata(ctx, spec)
                    version = meta.version
                    if meta.forwarded is not None:
                        response = _forwarded_response(meta.forwarded.status, meta.forwarded.body, ctx.response_headers)
                    else:
                        document = metadata_document(meta.name, meta.version or 0, meta.signature_defs)
                        response = _json_response(dumps(document), headers=ctx.response_headers or None)
                    status_name = _status_name(response.status)
                else:
                    result = await self.backend.status(ctx, spec)
                    if result.forwarded is not None:
                        response = _forwarded_response(result.forwarded.status, result.forwarded.body, ctx.response_headers)
                    else:
                        response = _json_response(status_json(result.statuses), headers=ctx.response_headers or None)
                    status_name = _status_name(response.status)
            except ServingError as err:
                response, status_name = _error_response(err), err.code.name
                for key, value in ctx.response_headers.items():
                    response.headers[key] = value
            except Exception as err:  # never let a request take the server down
                log.exception("unexpected error serving %s %s", request.method, request.path)
                response = _error_response(ServingError(Code.INTERNAL, f"internal error: {type(err).__name__}: {err}"))
                status_name = Code.INTERNAL.name
            front.metrics.record_request(model_name, version, status_name)
            if status_name == "OK":
                front.metrics.record_latency(model_name, version, api, "REST", tracking.elapsed)
            return response

    async def _predict(self, request: web.Request, route: V1Route, ctx: RequestContext
                       ) -> tuple[web.Response, int | None, str]:
        front = self.front
        body = await self._read_body(request)
        front.check_accepting()
        spec = ModelSpec(route.model_name, route.version, route.label)
        target = await self.backend.resolve(ctx, spec)

        def parse():
            return parse_predict_request(
                body, lambda sig: target.signature(sig, rest=True), front.limits.json
            )

        parsed = await asyncio.to_thread(parse) if len(body) > PARSE_IN_THREAD_BYTES else parse()
        call = PredictCall(spec, parsed.signature_name, parsed.inputs, row_format=parsed.row_format, body=body)
        result = await self.backend.predict(ctx, target, call)
        if result.forwarded is not None:
            status = result.forwarded.status
            return (_forwarded_response(status, result.forwarded.body, ctx.response_headers),
                    result.version, _status_name(status))
        payload = dumps(predict_response(result.outputs or {}, parsed.row_format))
        # The version that answered: TF Serving's REST body has no place for it, A/B analysis needs it.
        headers = {**ctx.response_headers, "X-Model-Version": str(result.version)}
        return _json_response(payload, headers=headers), result.version, "OK"

    async def healthz(self, request: web.Request) -> web.Response:
        return _json_response(json.dumps({"status": "alive"}).encode())

    async def readyz(self, request: web.Request) -> web.Response:
        state = self.backend.readiness()
        if self.front.draining:
            state = {**state, "ready": False, "reason": "shutting down"}
        return _json_response(json.dumps(state).encode(), 200 if state["ready"] else 503)

    async def list_models(self, request: web.Request) -> web.Response:
        """Ingot extension (TF Serving has no model listing): names, available versions, labels."""
        return _json_response(json.dumps({"models": self.backend.list_models()}).encode())

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(text=self.front.metrics.render(), content_type="text/plain")

    async def not_found(self, request: web.Request) -> web.Response:
        return _json_response(
            error_body(f"Not found: {request.method} {request.path}; the API is under /v1/models/"), 404
        )


def _status_name(http_status: int) -> str:
    return "OK" if http_status == 200 else code_from_http_status(http_status).name
