"""TF Serving's REST API on aiohttp (routes, status codes and bodies as in
model_servers/http_rest_api_handler.cc), plus Kubernetes probes and Prometheus metrics.

aiohttp because it is already a pinned dependency, runs on the same event loop as grpc.aio (one
process, one loop, no extra threads for I/O) and enforces a body size limit before reading.

Hardening against hostile callers, all on this one front end (so the gateway has it too):
- every error is `{"error": ...}` JSON: ours, the router's (middleware), a bad `Expect`, and the
  HTTP parser's own (malformed request line or headers; `JsonErrorRequestHandler`, on the one
  module that touches aiohttp's internals, ingot.serving.aiohttp_pin);
- a request's headers must arrive within `header_timeout_s` of its first byte and its body within
  `body_timeout_s` (408, connection closed); idle keep-alive connections close after
  `idle_timeout_s`;
- bodies are read compressed (aiohttp's inline decompression is off) and inflated with a cap in a
  worker process together with the parsing (ingot.serving.parsing), so nothing CPU-heavy runs on
  the event loop;
- malformed requests are rate-limited one-line warnings, never tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ingot.protocol import headers as wire
from ingot.protocol.documents import metadata_document, status_json
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.rest.response import dumps_response
from ingot.protocol.rest.text import dumps, error_body
from ingot.protocol.routes import V1Route, parse_v1_path
from ingot.protocol.status import Code, ServingError, code_from_http_status, invalid_argument
from ingot.serving.aiohttp_pin import HandlerAppRunner, HeaderTimeoutHandler
from ingot.serving.backend import REST, PredictCall, RequestContext
from ingot.serving.frontend import FrontEnd, RateLimitedLog
from ingot.serving.parsing import BodyLimits, ParsePool, decode_predict_body

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
ANY_PATH = r"{tail:[\s\S]*}"  # also paths with an encoded line break (`.` stops at \n)


def _json_response(body: bytes, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON_TYPE, headers=headers)


def _error_response(err: ServingError) -> web.Response:
    return _json_response(error_body(err.message), err.http_status)


def _forwarded_response(status: int, body: bytes | None, headers: dict[str, str]) -> web.Response:
    return web.Response(body=body or b"", status=status, content_type=JSON_TYPE, headers=headers or None)


class RestApi:
    def __init__(self, front: FrontEnd, *, metrics_path: str | None, timeout_s: float | None,
                 parse_pool: ParsePool | None = None) -> None:
        self.front = front
        self.backend = front.backend
        self.metrics_path = metrics_path
        self.timeout_s = timeout_s
        self.parse_pool = parse_pool
        limits = front.limits
        self.body_limits = BodyLimits(limits.json, limits.max_body_bytes, limits.max_image_pixels)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.front.limits.max_body_bytes, middlewares=[json_http_errors])
        expect = expect_100_continue
        app.router.add_route("*", "/v1/" + ANY_PATH, self.handle_v1, expect_handler=expect)
        app.router.add_get("/healthz", self.healthz, expect_handler=expect)
        app.router.add_get("/readyz", self.readyz, expect_handler=expect)
        app.router.add_get("/ingot/models", self.list_models, expect_handler=expect)
        if self.metrics_path:
            app.router.add_get(self.metrics_path, self.prometheus, expect_handler=expect)
        app.router.add_route("*", "/" + ANY_PATH, self.not_found, expect_handler=expect)
        return app

    def runner(self, *, shutdown_timeout: float) -> web.AppRunner:
        limits = self.front.limits
        return HandlerAppRunner(
            self.build_app(), handler_class=JsonErrorRequestHandler, access_log=None,
            shutdown_timeout=shutdown_timeout, handle_signals=False,
            auto_decompress=False,  # inflated with a cap, off the loop (ingot.serving.parsing)
            keepalive_timeout=limits.idle_timeout_s,
            # Unread body after an early answer (413, 408) is drained this long, then closed.
            lingering_time=min(10.0, limits.body_timeout_s),
            header_timeout=limits.header_timeout_s,
            client_errors=self.front.client_errors,
        )

    async def _read_body(self, request: web.Request) -> bytes:
        """The raw body (still compressed when it came so), within the size and time limits."""
        limits = self.front.limits
        limit = limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ServingError(
                Code.RESOURCE_EXHAUSTED,
                f"Request body of {request.content_length} bytes exceeds the limit of {limit} bytes",
                http_status=413,
            )
        charset = request.charset
        if charset and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise invalid_argument(f"JSON must be UTF-8 (RFC 8259); the Content-Type says charset={charset}")
        try:
            async with asyncio.timeout(limits.body_timeout_s):
                return await request.read()
        except TimeoutError:
            raise ServingError(
                Code.DEADLINE_EXCEEDED,
                f"the request body did not arrive within {limits.body_timeout_s:g} s",
                http_status=408,
            ) from None
        except web.HTTPRequestEntityTooLarge:
            raise ServingError(
                Code.RESOURCE_EXHAUSTED, f"Request body exceeds the limit of {limit} bytes", http_status=413
            ) from None
        except (web.RequestPayloadError, HttpProcessingError) as err:
            raise invalid_argument(f"the request body is malformed: {_reason(err)}") from None

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
                spec = ModelSpec(route.model_name, route.version, route.label)
                if route.model_name:  # `/v1/models` alone is TF Serving's own error
                    spec.check_wire()
                model_name = route.model_name
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
                if err.http_status == 408:  # a stalled body: answer, then close at once (no lingering)
                    front.client_errors.warning("REST %s from %s: %s", request.path, request.remote, err.message)
                    response.force_close()
                    await response.prepare(request)
                    await response.write_eof()
                    request.protocol.force_close()
            except Exception as err:  # never let a request take the server down
                log.exception("unexpected error serving %s %s", request.method, request.path)
                response = _error_response(ServingError(Code.INTERNAL, f"internal error: {type(err).__name__}: {err}"))
                status_name = Code.INTERNAL.name
            front.metrics.record_request(model_name, version, status_name)
            if status_name == "OK":
                front.metrics.record_latency(model_name, version, api, "REST", tracking.elapsed)
            elif api == "predict":
                front.predict_failed(ctx, _status_name(response.status))
            return response

    async def _predict(self, request: web.Request, route: V1Route, ctx: RequestContext
                       ) -> tuple[web.Response, int | None, str]:
        front = self.front
        body = await self._read_body(request)
        front.check_accepting()
        spec = ModelSpec(route.model_name, route.version, route.label)
        target = await self.backend.resolve(ctx, spec)
        encoding = request.headers.get("Content-Encoding", "").strip()
        if self.parse_pool is not None and (encoding or len(body) > front.limits.inline_parse_bytes):
            parsed, body = await self.parse_pool.decode(body, encoding, target.signatures, self.body_limits)
        else:
            parsed, body = decode_predict_body(body, encoding, target.signatures, self.body_limits)
        call = PredictCall(spec, parsed.signature_name, parsed.inputs, row_format=parsed.row_format, body=body)
        result = await self.backend.predict(ctx, target, call)
        if result.forwarded is not None:
            status = result.forwarded.status
            return (_forwarded_response(status, result.forwarded.body, ctx.response_headers),
                    result.version, _status_name(status))
        payload = dumps_response(result.outputs or {}, parsed.row_format)
        # The version that answered: TF Serving's REST body has no place for it, A/B analysis needs it.
        headers = {**ctx.response_headers, wire.REST_MODEL_VERSION: str(result.version)}
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


def _reason(err: BaseException) -> str:
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    return str(message).splitlines()[0][:300]


# --------------------------------------------------------------------------- JSON for every error


@web.middleware
async def json_http_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own HTTP errors (no route, method not allowed, body too large) as TF Serving's
    `{"error": ...}`."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        response = _json_response(error_body(f"{message}: {request.method} {request.path}"), exc.status)
        for header in ("Allow",):
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        return response


async def expect_100_continue(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` as aiohttp does it; any other expectation is a JSON 417 (aiohttp's
    own answer fails on a header that is not UTF-8)."""
    expect = request.headers.get("Expect", "")
    if expect.lower() == "100-continue":
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None
    response = _json_response(
        error_body(f"Unsupported Expect header {expect[:100]!r}; only 100-continue is supported"), 417
    )
    response.force_close()
    return response


class JsonErrorRequestHandler(HeaderTimeoutHandler):
    """The connection handler: TF Serving-shaped errors for requests aiohttp's HTTP parser
    refuses (bad request line, duplicate or oversized headers, ...), a one-line rate-limited
    warning instead of a traceback for each, and 408 for headers that do not arrive in time."""

    def __init__(self, manager: Any, *, client_errors: RateLimitedLog | None = None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._client_errors = client_errors or RateLimitedLog(log)

    def headers_timed_out(self) -> None:
        transport = self.transport
        assert transport is not None
        self._client_errors.warning(
            "REST connection from %s: request headers incomplete after %g s; closed",
            (transport.get_extra_info("peername") or ("?",))[0], self.header_timeout,
        )
        body = error_body(f"Request headers did not arrive within {self.header_timeout:g} s")
        transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.force_close()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            log.error("error handling a REST request from %s: %s: %s", request.remote,
                      type(exc).__name__ if exc else "error", exc, exc_info=exc if status == 500 else None)
        else:
            self._client_errors.warning("malformed REST request from %s: %s %s", request.remote, status,
                                        _reason(exc) if exc is not None else message)
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        text = _reason(exc) if exc is not None else (message or HTTPStatus(status).phrase)
        response = _json_response(error_body(f"{HTTPStatus(status).phrase}: {text}"), status)
        response.force_close()
        return response
