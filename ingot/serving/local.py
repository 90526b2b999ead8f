"""`LocalBackend`: requests answered by the models this process loaded (the model manager and its
batching), what `ingot serve` runs behind its REST and gRPC front ends."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import Any

from ingot.errors import ConfigError
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.signatures import SERVING_DEFAULT
from ingot.protocol.status import Code, ServingError, invalid_argument
from ingot.serving.backend import (
    Backend,
    MetadataResult,
    PredictCall,
    PredictResult,
    RequestContext,
    StatusResult,
    Target,
)
from ingot.serving.manager import ModelManager

log = logging.getLogger(__name__)


RELOAD_FLAG = "--allow_model_config_reload"


class LocalBackend(Backend):
    forwards_grpc_request = False  # the servable reads the decoded arrays only
    def __init__(self, manager: ModelManager, *, allow_reload: bool = False,
                 model_roots: tuple[str, ...] = ()) -> None:
        self.manager = manager
        self.allow_reload = allow_reload
        self.model_roots = model_roots

    async def resolve(self, ctx: RequestContext, spec: ModelSpec) -> Target:
        return self.manager.resolve(spec.name, spec.version, spec.label)

    async def predict(self, ctx: RequestContext, target: Target, call: PredictCall) -> PredictResult:
        """Submit to the servable's runner and wait at most `ctx.timeout_s`; a request still
        queued when its time is up is cancelled, so the batch thread never runs it.

        A version can start unloading between resolve() and here (a rollover); the request then
        goes to what the spec resolves to now, if its signature is the same, so rollovers lose
        no request."""
        from ingot.serving.servable import ServableUnloaded

        servable: Any = target
        signature_name = call.signature_name
        try:
            future: Future = servable.submit(signature_name, call.inputs)
        except ServableUnloaded:
            fresh = self.manager.resolve(*call.spec.as_tuple())
            key = signature_name or SERVING_DEFAULT
            if fresh is servable or fresh.signatures.get(key) != servable.signatures.get(key):
                raise
            servable = fresh
            future = servable.submit(signature_name, call.inputs)
        waiter = asyncio.wrap_future(future)
        limit = ctx.timeout_s
        try:
            async with asyncio.timeout(limit):
                outputs = await waiter
        except TimeoutError:
            future.cancel()
            raise ServingError(
                Code.DEADLINE_EXCEEDED,
                f"Deadline exceeded: the prediction did not finish within {(limit or 0) * 1000:.0f} ms",
            ) from None
        return PredictResult(outputs, servable.name, servable.version,
                             servable.signature(signature_name).name)

    async def metadata(self, ctx: RequestContext, spec: ModelSpec) -> MetadataResult:
        servable = self.manager.resolve(*spec.as_tuple())
        return MetadataResult(servable.name, servable.version, servable.signature_defs)

    async def status(self, ctx: RequestContext, spec: ModelSpec) -> StatusResult:
        return StatusResult(self.manager.status(*spec.as_tuple()))

    def readiness(self) -> dict[str, Any]:
        return self.manager.readiness()

    def list_models(self) -> list[dict[str, Any]]:
        ready = self.manager.readiness()["models"]
        return [
            {"name": name, "available_versions": versions, "labels": self.manager.labels(name)}
            for name, versions in ready.items()
        ]

    async def reload_config(self, config: Any, *, peer: str | None = None) -> None:
        """Validate a ModelServerConfig (base paths relative to the working directory, as TF
        Serving does) and apply it; the manager loads and unloads versions in the background.

        Closed by default: the server must run with --allow_model_config_reload, the caller must
        be on loopback, and every base path must lie under one of the configured model roots."""
        from pathlib import Path

        from google.protobuf import text_format

        from ingot.serving.config import path_under_roots, resolve_base_paths, validate_model_server_config

        if not self.allow_reload:
            raise ServingError(
                Code.PERMISSION_DENIED,
                f"HandleReloadConfigRequest is disabled on this server; start it with {RELOAD_FLAG} "
                "to take model config reloads (from loopback callers only)",
            )
        if not is_loopback_peer(peer):
            raise ServingError(
                Code.PERMISSION_DENIED,
                f"HandleReloadConfigRequest is taken only from loopback callers ({RELOAD_FLAG}); "
                f"this one came from {str(peer)[:100]}",
            )
        if config.WhichOneof("config") != "model_config_list":
            raise invalid_argument(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                "ModelConfigList is currently supported"
            )
        try:
            validate_model_server_config(config, source="ReloadConfigRequest")
        except ConfigError as err:
            raise invalid_argument(str(err)) from None
        config = type(config).FromString(config.SerializeToString())
        resolve_base_paths(config, relative_to=Path.cwd())
        for model in config.model_config_list.config:
            if not path_under_roots(model.base_path, self.model_roots):
                raise ServingError(
                    Code.PERMISSION_DENIED,
                    f"model {model.name[:128]!r}: base_path {model.base_path[:300]!r} is not under the "
                    f"server's model roots ({', '.join(self.model_roots) or 'none'}); reloads may only "
                    "name models under the configured --model_repository or base paths",
                )
        log.info("reloading model config:\n%s", text_format.MessageToString(config))
        await asyncio.to_thread(self.manager.reload_config, config)


def is_loopback_peer(peer: str | None) -> bool:
    """Whether a gRPC peer string (`ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`, `unix:...`) is this
    machine."""
    import ipaddress

    if not peer:
        return False
    if peer.startswith("unix:"):
        return True
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        host = rest.rsplit(":", 1)[0]
    elif kind == "ipv6":
        host = rest.rsplit(":", 1)[0].strip("[]")
    else:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))
