"""TF Serving's REST API on aiohttp (routes, status codes and bodies as in
model_servers/http_rest_api_handler.cc), plus Kubernetes probes and Prometheus metrics.

aiohttp because it is already a pinned dependency, runs on the same event loop as grpc.aio (one
process, one loop, no extra threads for I/O) and enforces a body size limit before reading.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from ingot.serving.core import ServingCore
from ingot.serving.rest_json import dumps, error_body, parse_predict_request, predict_response
from ingot.serving.status import Code, ServingError, invalid_argument

log = logging.getLogger(__name__)

# http_rest_api_util.cc
PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
JSON_TYPE = "application/json"
PARSE_IN_THREAD_BYTES = 256 << 10
INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class V1Route:
    kind: str  # predict | classify | regress | status | metadata
    model_name: str
    version: int | None = None
    label: str | None = None


def parse_v1_path(method: str, raw_path: str) -> V1Route:
    """Match a /v1/ path the way TF Serving does; anything else under /v1/ is 'Malformed'."""
    malformed = invalid_argument(f"Malformed request: {method} {raw_path}")
    if method == "POST":
        match = PREDICTION_PATH.fullmatch(raw_path)
        if not match or match.group(4) not in ("predict", "classify", "regress"):
            raise malformed
        name, version, label, kind = match.groups()
    elif method == "GET":
        match = STATUS_PATH.fullmatch(raw_path)
        if not match:
            raise malformed
        name, version, label, sub = match.groups()
        kind = "metadata" if sub == "metadata" else "status"
        if sub is not None and sub != "metadata":
            raise malformed
    else:
        raise malformed
    name = unquote(name or "")
    number = None
    if version:
        number = int(version)
        if number > INT64_MAX:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
    if kind in ("status", "metadata") and not name:
        raise invalid_argument("Missing model name in request.")
    if number is not None and label:
        raise invalid_argument(
            f"Both model version ({number}) and model version label ({label}) cannot be supplied."
        )
    return V1Route(kind, name, number, unquote(label) if label else None)


def status_json(statuses: list) -> bytes:
    """GetModelStatusResponse as TF Serving prints it (proto JSON, json_name keys)."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_status_pb2

    response = get_model_status_pb2.GetModelStatusResponse()
    for s in statuses:
        entry = response.model_version_status.add()
        entry.version = s.version
        entry.state = int(s.state)
        entry.status.error_code = int(s.error_code)
        entry.status.error_message = s.error_message
    return json_format.MessageToJson(response, always_print_fields_with_no_presence=True).encode()


def metadata_document(servable: Any) -> dict:
    """{"model_spec": ..., "metadata": {"signature_def": ...}} with proto field names."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

    spec = model_pb2.ModelSpec(name=servable.name)
    spec.version.value = servable.version
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for name, sig_def in servable.signature_defs.items():
        sig_map.signature_def[name].CopyFrom(sig_def)
    opts = dict(always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
    return {
        "model_spec": json_format.MessageToDict(spec, **opts),
        "metadata": {"signature_def": json_format.MessageToDict(sig_map, **opts)},
    }


def _json_response(body: bytes, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON_TYPE, headers=headers)


def _error_response(err: ServingError) -> web.Response:
    return _json_response(error_body(err.message), err.http_status)


class RestApi:
    def __init__(self, core: ServingCore, *, metrics_path: str | None, timeout_s: float | None) -> None:
        self.core = core
        self.metrics_path = metrics_path
        self.timeout_s = timeout_s

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.core.limits.max_body_bytes)
        app.router.add_route("*", "/v1/{tail:.*}", self.handle_v1)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/ingot/models", self.list_models)
        if self.metrics_path:
            app.router.add_get(self.metrics_path, self.prometheus)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.core.limits.max_body_bytes
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

    async def handle_v1(self, request: web.Request) -> web.Response:
        core = self.core
        model_name, version, api = "", None, ""
        with core.track() as tracking:
            try:
                route = parse_v1_path(request.method, request.rel_url.raw_path)
                model_name = route.model_name
                api = route.kind if route.kind in ("predict", "classify", "regress") else ""
                if route.kind == "predict":
                    response, version = await self._predict(request, route)
                elif route.kind in ("classify", "regress"):
                    raise ServingError(
                        Code.UNIMPLEMENTED,
                        f"{route.kind} is not supported by Ingot's model server; use :predict "
                        "(the image signatures return probabilities and class ids)",
                    )
                elif route.kind == "metadata":
                    servable = core.manager.resolve(route.model_name, route.version, route.label)
                    version = servable.version
                    response = _json_response(dumps(metadata_document(servable)))
                else:
                    statuses = core.manager.status(route.model_name, route.version, route.label)
                    response = _json_response(status_json(statuses))
                status_name = "OK"
            except ServingError as err:
                response, status_name = _error_response(err), err.code.name
            except Exception as err:  # never let a request take the server down
                log.exception("unexpected error serving %s %s", request.method, request.path)
                response = _error_response(ServingError(Code.INTERNAL, f"internal error: {type(err).__name__}: {err}"))
                status_name = Code.INTERNAL.name
            core.metrics.record_request(model_name, version, status_name)
            if status_name == "OK":
                core.metrics.record_latency(model_name, version, api, "REST", tracking.elapsed)
            return response

    async def _predict(self, request: web.Request, route: V1Route) -> tuple[web.Response, int]:
        core = self.core
        body = await self._read_body(request)
        servable = core.resolve(route.model_name, route.version, route.label)

        def parse():
            return parse_predict_request(
                body, lambda sig: servable.signature(sig, rest=True), core.limits.json
            )

        parsed = await asyncio.to_thread(parse) if len(body) > PARSE_IN_THREAD_BYTES else parse()
        outputs, servable = await core.run(servable, parsed.signature_name, parsed.inputs, self.timeout_s,
                                           model_spec=(route.model_name, route.version, route.label))
        payload = dumps(predict_response(outputs, parsed.row_format))
        # The version that answered: TF Serving's REST body has no place for it, A/B analysis needs it.
        return _json_response(payload, headers={"X-Model-Version": str(servable.version)}), servable.version

    async def healthz(self, request: web.Request) -> web.Response:
        return _json_response(json.dumps({"status": "alive"}).encode())

    async def readyz(self, request: web.Request) -> web.Response:
        state = self.core.manager.readiness()
        if self.core.draining:
            state = {**state, "ready": False, "reason": "shutting down"}
        return _json_response(json.dumps(state).encode(), 200 if state["ready"] else 503)

    async def list_models(self, request: web.Request) -> web.Response:
        """Ingot extension (TF Serving has no model listing): names, available versions, labels."""
        manager = self.core.manager
        ready = manager.readiness()["models"]
        models = [
            {"name": name, "available_versions": versions, "labels": manager.labels(name)}
            for name, versions in ready.items()
        ]
        return _json_response(json.dumps({"models": models}).encode())

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(text=self.core.metrics.render(), content_type="text/plain")

    async def not_found(self, request: web.Request) -> web.Response:
        return _json_response(
            error_body(f"Not found: {request.method} {request.path}; the API is under /v1/models/"), 404
        )
