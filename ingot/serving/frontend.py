"""What the REST and gRPC front ends share whatever backend answers: request limits, draining,
in-flight tracking and request metrics. The handlers translate their wire format to and from the
`Backend` calls (ingot.serving.backend)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingot.protocol.images import DEFAULT_MAX_PIXELS
from ingot.protocol.rest.request import JsonLimits
from ingot.protocol.status import unavailable
from ingot.protocol.tensors import TensorLimits
from ingot.serving.backend import Backend, RequestContext
from ingot.serving.metrics import ServingMetrics

log = logging.getLogger("ingot.serving.requests")


class RateLimitedLog:
    """One-line warnings for what callers got wrong (malformed HTTP, undecodable protobuf, stalled
    connections): at most `burst` per `interval_s`, then a count of what was left out. A flood of
    bad requests costs a few lines, never tracebacks."""

    def __init__(self, logger: logging.Logger, *, burst: int = 10, interval_s: float = 60.0) -> None:
        self.logger = logger
        self.burst = burst
        self.interval_s = interval_s
        self._window_start = float("-inf")
        self._in_window = 0
        self.suppressed = 0
        self._lock = threading.Lock()

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= self.interval_s:
                if self.suppressed:
                    self.logger.warning("%d more client errors in the last %.0f s were not logged",
                                        self.suppressed, self.interval_s)
                self._window_start, self._in_window, self.suppressed = now, 0, 0
            if self._in_window >= self.burst:
                self.suppressed += 1
                return
            self._in_window += 1
        self.logger.warning(message, *args)


@dataclass(frozen=True)
class RequestLimits:
    """What one request may cost; every limit is an `ingot serve` flag of the same name."""

    max_body_bytes: int = 32 << 20  # REST body, before and after decompression (413)
    max_json_depth: int = 32
    max_elements: int = 1 << 24  # per input tensor
    default_timeout_s: float = 30.0
    max_decoded_bytes: int = 128 << 20  # all inputs of one request once decoded and expanded
    max_batch_rows: int | None = 1024  # first (batch) dimension of a request's inputs
    max_image_pixels: int | None = DEFAULT_MAX_PIXELS  # declared width x height of an encoded image
    header_timeout_s: float = 10.0  # a request's headers must arrive within this (slow loris)
    body_timeout_s: float = 30.0  # ... and its body within this
    idle_timeout_s: float = 60.0  # an idle keep-alive connection is closed after this
    inline_parse_bytes: int = 64 << 10  # larger (or compressed) REST bodies parse in a worker process
    parse_workers: int = 2

    @property
    def json(self) -> JsonLimits:
        return JsonLimits(max_depth=self.max_json_depth, max_elements=self.max_elements,
                          max_bytes=self.max_decoded_bytes, max_rows=self.max_batch_rows)

    @property
    def tensors(self) -> TensorLimits:
        return TensorLimits(max_elements=self.max_elements, max_bytes=self.max_decoded_bytes,
                            max_rows=self.max_batch_rows)


class FrontEnd:
    def __init__(self, backend: Backend, metrics: ServingMetrics, limits: RequestLimits) -> None:
        self.backend = backend
        self.metrics = metrics
        self.limits = limits
        self.draining = False
        self.in_flight = 0
        self.client_errors = RateLimitedLog(log)
        self._predict_error_hooks: list[Callable[[RequestContext, str], None]] = []

    def on_predict_error(self, hook: Callable[[RequestContext, str], None]) -> None:
        """Call `hook(ctx, status_name)` whenever a predict request is answered with an error,
        wherever it arose (path, body, inputs, backend): the gateway logs requests the front end
        refused after its backend chose a variant (`ctx.state` says what the backend knew)."""
        self._predict_error_hooks.append(hook)

    def predict_failed(self, ctx: RequestContext, status_name: str) -> None:
        for hook in self._predict_error_hooks:
            try:
                hook(ctx, status_name)
            except Exception:
                log.exception("a predict-error hook failed")

    def check_accepting(self) -> None:
        """New predictions are refused (UNAVAILABLE, retryable) once shutdown has begun."""
        if self.draining:
            raise unavailable("the server is shutting down and takes no new requests")

    def timeout_s(self, requested: float | None) -> float | None:
        """The deadline a request runs under: the caller's, else the server default (0: none)."""
        limit = self.limits.default_timeout_s if requested is None else requested
        return limit if limit and limit > 0 else None

    def track(self) -> _InFlight:
        return _InFlight(self)


class _InFlight:
    """Counts requests in progress so shutdown can wait for them."""

    def __init__(self, front: FrontEnd) -> None:
        self.front = front
        self.started = time.perf_counter()

    def __enter__(self) -> _InFlight:
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

    def __init__(self, front: FrontEnd, options: ListenOptions, *, rest_api: Any = None) -> None:
        """`rest_api(front, metrics_path=..., timeout_s=...)` replaces the stock REST app (the
        gateway adds its routes)."""
        self.front = front
        self.options = options
        self._rest_api = rest_api
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._runner: Any = None
        self._grpc: Any = None
        self.parse_pool: Any = None

    async def start(self) -> None:
        opts = self.options
        if opts.rest_port is not None:
            from aiohttp import web

            from ingot.serving.parsing import ParsePool
            from ingot.serving.rest import RestApi

            self.parse_pool = ParsePool(self.front.limits.parse_workers)
            self.parse_pool.start()  # workers start in the background
            api = (self._rest_api or RestApi)(self.front, metrics_path=opts.metrics_path,
                                              timeout_s=opts.rest_timeout_s, parse_pool=self.parse_pool)
            self._runner = api.runner(shutdown_timeout=opts.shutdown_grace_s)
            await self._runner.setup()
            site = web.TCPSite(self._runner, opts.host, opts.rest_port, reuse_address=True)
            await site.start()
            self.rest_port = self._runner.addresses[0][1]  # the real port when 0 was asked
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
        if self.parse_pool is not None:
            await asyncio.to_thread(self.parse_pool.stop)


class ServiceThread:
    """A service (`ingot serve`'s ModelServer, the gateway) on its own event loop in a daemon
    thread, for tests and benchmarks that run several in one process. `start()` returns once the
    ports are bound; the service needs async `start()`, `stop(grace_s)`, `wait_stopped()` and
    `rest_port` / `grpc_port`."""

    name = "service"

    def __init__(self, options: Any) -> None:
        self.options = options
        self.service: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def make_service(self) -> Any:
        raise NotImplementedError

    def start(self, timeout_s: float = 60.0) -> Any:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"the {self.name} did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self.service = self.make_service()
            loop.run_until_complete(self.service.start())
        except BaseException as err:  # reported to start()
            self._error = err
            self._started.set()
            return
        self._started.set()
        loop.run_until_complete(self.service.wait_stopped())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    @property
    def rest_url(self) -> str:
        return f"http://{self.options.host}:{self.service.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.options.host}:{self.service.grpc_port}"

    def stop(self, grace_s: float = 10.0) -> None:
        if self._loop is None or self.service is None or self._thread is None:
            return
        if self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self.service.stop(grace_s), self._loop)
            future.result(timeout=grace_s + 60)
        self._thread.join(timeout=30)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
