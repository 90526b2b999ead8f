"""Connections to the model servers the routing table names: one pooled aiohttp session for REST
and one grpc.aio channel per gRPC target, all on the gateway's event loop (nothing blocks it).

Only the routing table's hosts are ever contacted, and the path of every upstream call is built
from the table's model name and a version number or a (quoted) label (`ModelSpec.path`): nothing a caller sends
can choose a host or smuggle a path. A connection-level failure is `UpstreamDown` (the gateway
then falls back to the champion, or answers 503); an upstream's own answers, errors included, are
returned as they are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from ingot.gateway.routing import Upstream
from ingot.protocol.documents import SIGNATURE_DEF_FIELD
from ingot.protocol.model_spec import ModelSpec

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
DOWN_FOR_S = 1.0  # after a connection failure, skip the upstream this long (fast fallback)
LABEL_TTL_S = 5.0
MAX_CACHED_LABELS = 256  # label → version answers kept per upstream (least recently used go first)


class UpstreamDown(Exception):
    """The upstream could not be reached (refused, reset, unresolvable): no answer exists."""


class UpstreamClient:
    """REST and gRPC access to one variant's model server."""

    def __init__(self, upstream: Upstream, session: Any, *, max_message_bytes: int = 64 << 20) -> None:
        import grpc
        from tensorflow_serving.apis import (
            model_service_pb2_grpc,
            prediction_service_pb2_grpc,
        )

        self.upstream = upstream
        self._session = session
        self._channel = grpc.aio.insecure_channel(upstream.grpc, options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ])
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._signatures: dict[tuple[str, int], Mapping[str, Any]] = {}
        # Positive answers only, bounded: labels come from callers, so unknown ones are never kept.
        self._labels: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()
        self._down_until = 0.0

    @property
    def looks_down(self) -> bool:
        return time.monotonic() < self._down_until

    def mark_down(self) -> None:
        self._down_until = time.monotonic() + DOWN_FOR_S

    async def rest(self, method: str, path: str, body: bytes | None, timeout_s: float | None,
                   headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """(HTTP status, body) of the upstream's answer; UpstreamDown when there is none."""
        import aiohttp

        url = self.upstream.rest + path
        try:
            async with self._session.request(
                method, url, data=body, headers={"Content-Type": JSON_TYPE, **(headers or {})},
                timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False,
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientConnectionError, OSError) as err:
            if isinstance(err, aiohttp.ServerTimeoutError):
                raise
            self.mark_down()
            raise UpstreamDown(f"{self.upstream.rest}: {type(err).__name__}: {err}") from err

    async def grpc(self, stub_method: Any, request: Any, timeout_s: float | None,
                   metadata: tuple[tuple[str, str], ...] = ()) -> Any:
        """The upstream's gRPC answer; its errors raise grpc.aio.AioRpcError, no connection raises
        UpstreamDown."""
        import grpc

        try:
            return await stub_method(request, timeout=timeout_s, metadata=metadata or None)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:
                self.mark_down()
                raise UpstreamDown(f"{self.upstream.grpc}: {err.details()}") from err
            raise

    async def signatures(self, model: str, version: int, timeout_s: float = 10.0) -> Mapping[str, Any]:
        """The version's signatures (SignatureSpec by name), from GetModelMetadata; cached, since a
        version number names one artifact forever."""
        key = (model, version)
        found = self._signatures.get(key)
        if found is not None:
            return found
        from tensorflow_serving.apis import get_model_metadata_pb2

        from ingot.protocol.tensors import signature_from_def

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        ModelSpec(model, version).fill(request.model_spec)
        request.metadata_field.append(SIGNATURE_DEF_FIELD)
        response = await self.grpc(self.predictions.GetModelMetadata, request, timeout_s)
        defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(defs)
        found = {name: signature_from_def(name, sig) for name, sig in defs.signature_def.items()}
        self._signatures[key] = found
        return found

    async def label_version(self, model: str, label: str, timeout_s: float = 5.0) -> int | None:
        """The version a TF Serving version label names on this upstream (cached briefly), or None."""
        import grpc
        from tensorflow_serving.apis import get_model_status_pb2

        key = (model, label)
        cached = self._labels.get(key)
        if cached is not None:
            if time.monotonic() - cached[0] < LABEL_TTL_S:
                self._labels.move_to_end(key)
                return cached[1]
            del self._labels[key]
        request = get_model_status_pb2.GetModelStatusRequest()
        ModelSpec(model, label=label).fill(request.model_spec)
        try:
            response = await self.grpc(self.models.GetModelStatus, request, timeout_s)
            version: int | None = response.model_version_status[0].version if response.model_version_status else None
        except grpc.aio.AioRpcError:
            version = None
        if version is not None:
            self._labels[key] = (time.monotonic(), version)
            self._labels.move_to_end(key)
            while len(self._labels) > MAX_CACHED_LABELS:
                self._labels.popitem(last=False)
        return version

    async def close(self) -> None:
        await self._channel.close()


class UpstreamPool:
    """One client per upstream (REST URL, gRPC target); clients of upstreams that left the routing
    table close after a grace period, so requests already using them finish."""

    def __init__(self, *, connections: int = 256, max_message_bytes: int = 64 << 20,
                 retire_after_s: float = 60.0) -> None:
        self._connections = connections
        self._max_message_bytes = max_message_bytes
        self._retire_after_s = retire_after_s
        self._clients: dict[tuple[str, str], UpstreamClient] = {}
        self._session: Any = None
        self._retiring: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections,
                                           keepalive_timeout=30),
            auto_decompress=False,
        )

    def client(self, upstream: Upstream) -> UpstreamClient:
        key = (upstream.rest, upstream.grpc)
        client = self._clients.get(key)
        if client is None or client.upstream != upstream:
            previous = client
            client = UpstreamClient(upstream, self._session, max_message_bytes=self._max_message_bytes)
            if previous is not None:
                client._signatures = previous._signatures  # same server: what it served is still true
                self._retire_later(previous)
            self._clients[key] = client
        return client

    def keep_only(self, upstreams: list[Upstream]) -> None:
        """Retire clients of upstreams no longer in the table."""
        wanted = {(u.rest, u.grpc) for u in upstreams}
        for key in [k for k in self._clients if k not in wanted]:
            self._retire_later(self._clients.pop(key))

    def _retire_later(self, client: UpstreamClient) -> None:
        task = asyncio.get_running_loop().create_task(self._retire(client))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, client: UpstreamClient) -> None:
        await asyncio.sleep(self._retire_after_s)
        await client.close()

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        if self._session is not None:
            await self._session.close()
