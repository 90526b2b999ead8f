"""What the REST and gRPC front ends share whatever backend answers: request limits, draining,
in-flight tracking and request metrics. The handlers translate their wire format to and from the
`Backend` calls (ingot.serving.backend)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ingot.protocol.rest_json import JsonLimits
from ingot.protocol.status import unavailable
from ingot.serving.backend import Backend
from ingot.serving.metrics import ServingMetrics


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int = 32 << 20
    max_json_depth: int = 32
    max_elements: int = 1 << 24
    default_timeout_s: float = 30.0

    @property
    def json(self) -> JsonLimits:
        return JsonLimits(max_depth=self.max_json_depth, max_elements=self.max_elements)


class FrontEnd:
    def __init__(self, backend: Backend, metrics: ServingMetrics, limits: RequestLimits) -> None:
        self.backend = backend
        self.metrics = metrics
        self.limits = limits
        self.draining = False
        self.in_flight = 0

    def check_accepting(self) -> None:
        """New predictions are refused (UNAVAILABLE, retryable) once shutdown has begun."""
        if self.draining:
            raise unavailable("the server is shutting down and takes no new requests")

    def timeout_s(self, requested: float | None) -> float | None:
        """The deadline a request runs under: the caller's, else the server default (0: none)."""
        limit = self.limits.default_timeout_s if requested is None else requested
        return limit if limit and limit > 0 else None

    def track(self) -> "_InFlight":
        return _InFlight(self)


class _InFlight:
    """Counts requests in progress so shutdown can wait for them."""

    def __init__(self, front: FrontEnd) -> None:
        self.front = front
        self.started = time.perf_counter()

    def __enter__(self) -> "_InFlight":
        self.front.in_flight += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self.front.in_flight -= 1

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@dataclass(frozen=True)
class ListenOptions:
    host: str = "127.0.0.1"
    rest_port: int | None = 8501  # None disables; 0 picks a free port
    grpc_port: int | None = 8500
    metrics_path: str | None = None  # Prometheus text at this REST path; None: off
    rest_timeout_s: float | None = 30.0
    grpc_max_message_bytes: int = 64 << 20
    shutdown_grace_s: float = 30.0


class Listeners:
    """The REST (aiohttp) and gRPC (grpc.aio) listeners of one FrontEnd on the running event loop:
    what `ingot serve` and the gateway both run, whatever their backend."""

    def __init__(self, front: FrontEnd, options: ListenOptions) -> None:
        self.front = front
        self.options = options
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._runner: Any = None
        self._grpc: Any = None

    async def start(self) -> None:
        opts = self.options
        if opts.rest_port is not None:
            from aiohttp import web

            from ingot.serving.rest import RestApi

            api = RestApi(self.front, metrics_path=opts.metrics_path, timeout_s=opts.rest_timeout_s)
            self._runner = web.AppRunner(
                api.build_app(), access_log=None, shutdown_timeout=opts.shutdown_grace_s,
                handle_signals=False,
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, opts.host, opts.rest_port, reuse_address=True)
            await site.start()
            self.rest_port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked
        if opts.grpc_port is not None:
            import grpc

            from ingot.serving.grpc_service import add_services

            self._grpc = grpc.aio.server(options=[
                ("grpc.max_receive_message_length", opts.grpc_max_message_bytes),
                ("grpc.max_send_message_length", opts.grpc_max_message_bytes),
                ("grpc.so_reuseport", 0),
            ])
            add_services(self._grpc, self.front)
            address = f"[{opts.host}]:{opts.grpc_port}" if ":" in opts.host else f"{opts.host}:{opts.grpc_port}"
            self.grpc_port = self._grpc.add_insecure_port(address)
            await self._grpc.start()

    async def stop(self, grace_s: float) -> None:
        """Refuse new predictions, stop listening, wait (up to `grace_s`) for in-flight requests."""
        import asyncio

        self.front.draining = True
        deadline = time.monotonic() + grace_s
        tasks = []
        if self._grpc is not None:
            tasks.append(self._grpc.stop(grace_s))
        if self._runner is not None:
            tasks.append(self._runner.cleanup())
        await asyncio.gather(*tasks, return_exceptions=True)
        while self.front.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
