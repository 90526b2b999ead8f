"""The gateway process: the shared REST/gRPC front ends (ingot.serving) over `GatewayBackend`,
plus `POST /v1/feedback`, Prometheus metrics, routing-table polling and the inference-log sink.

`Gateway` is the async object; `GatewayThread` runs one on its own loop in a thread (tests,
benchmarks); `run_gateway` is `ingot gateway`: it serves until SIGTERM/SIGINT, then drains
in-flight requests and mirrors and flushes the log.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingot.gateway.backend import GatewayBackend
from ingot.gateway.classes import ClassCatalog
from ingot.gateway.metrics import GatewayMetrics
from ingot.gateway.routing import RoutingTableWatcher
from ingot.gateway.upstream import UpstreamPool
from ingot.protocol.routes import FEEDBACK_PATH
from ingot.serving.frontend import FrontEnd, Listeners, ListenOptions, RequestLimits, ServiceThread
from ingot.serving.rest import RestApi

log = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"
MAX_FEEDBACK_BYTES = 4 << 20


@dataclass
class GatewayOptions:
    routes: str
    host: str = "127.0.0.1"
    grpc_port: int | None = 8500
    rest_port: int | None = 8501
    log_enabled: bool = True
    log_url: str | None = None  # None: $INGOT_LOG_URL, else the registry's database
    log_jsonl: str | None = None
    cache_url: str | None = None  # the prediction cache's Redis; None: no cache
    log_queue_size: int = 20_000
    model_repository: str | None = None  # model cards, for the class names feedback labels use
    routes_poll_s: float = 2.0
    limits: RequestLimits = field(default_factory=RequestLimits)
    rest_timeout_s: float | None = 30.0
    upstream_timeout_s: float = 30.0
    upstream_connections: int = 256
    max_mirrors_in_flight: int = 32
    shutdown_grace_s: float = 30.0
    grpc_max_message_bytes: int = 64 << 20


class LazyLogStore:
    """The log's database, opened (and migrated) on first use, so a gateway starts and serves while
    the database is still down; a failed open is retried by the next write."""

    def __init__(self, url: str | None) -> None:
        self._url = url
        self._store: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._store is None:
                from ingot.inference_log.store import InferenceLogStore

                self._store = InferenceLogStore.from_url(self._url)
            return self._store

    def write(self, records: Any) -> int:
        return int(self.get().write(records))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class Gateway:
    def __init__(self, options: GatewayOptions) -> None:
        from ingot.serving.metrics import ServingMetrics

        self.options = options
        self.watcher = RoutingTableWatcher(options.routes)
        self.metrics = GatewayMetrics()
        self.pool = UpstreamPool(connections=options.upstream_connections,
                                 max_message_bytes=options.grpc_max_message_bytes)
        self.classes = ClassCatalog(options.model_repository)
        self.log_store: LazyLogStore | None = None
        self.sinks: list[Any] = []
        if options.log_enabled:
            from ingot.inference_log.sink import QueueSink

            self.log_store = LazyLogStore(options.log_url)
            self.sinks.append(QueueSink(self.log_store, max_queue=options.log_queue_size))
        if options.log_jsonl:
            from ingot.inference_log.sink import JsonlWriter, QueueSink

            self._jsonl = JsonlWriter(options.log_jsonl)
            self.sinks.append(QueueSink(self._jsonl, name="inference-log-jsonl", max_queue=options.log_queue_size))
        self.backend = GatewayBackend(
            lambda: self.watcher.table, self.pool, sink=_FanOut(self.sinks) if self.sinks else None,
            metrics=self.metrics, classes=self.classes, default_timeout_s=options.upstream_timeout_s,
            max_mirrors_in_flight=options.max_mirrors_in_flight,
        )
        if options.cache_url:
            from ingot.gateway.cache import PredictionCache

            self.backend.cache = PredictionCache(options.cache_url)
        self.metrics.watch(self._readings)
        self.serving_metrics = ServingMetrics()
        self.front = FrontEnd(self.backend, self.serving_metrics, options.limits)
        self.front.on_predict_error(self.backend.record_refused)
        self.listeners = Listeners(
            self.front,
            ListenOptions(host=options.host, rest_port=options.rest_port, grpc_port=options.grpc_port,
                          metrics_path=METRICS_PATH, rest_timeout_s=options.rest_timeout_s,
                          grpc_max_message_bytes=options.grpc_max_message_bytes,
                          shutdown_grace_s=options.shutdown_grace_s),
            rest_api=lambda front, **kw: GatewayRestApi(front, gateway=self, **kw),
        )
        self._watch_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._token_cache: tuple[str, float, str] | None = None

    def _readings(self) -> dict[str, float]:
        written = sum(s.stats.written for s in self.sinks[:1])
        dropped = sum(s.stats.dropped for s in self.sinks[:1])
        return {
            "ingot_gateway_log_records_written": written,
            "ingot_gateway_log_records_dropped": dropped,
            "ingot_gateway_log_queue_depth": sum(s.queued for s in self.sinks[:1]),
            "ingot_gateway_routing_reloads": self.watcher.reloads,
            "ingot_gateway_routing_rejections": self.watcher.rejections,
        }

    @property
    def rest_port(self) -> int | None:
        return self.listeners.rest_port

    @property
    def grpc_port(self) -> int | None:
        return self.listeners.grpc_port

    async def start(self) -> None:
        await self.pool.start()
        await self.listeners.start()
        self._watch_task = asyncio.get_running_loop().create_task(self._watch())
        table = self.watcher.table
        log.info("gateway for model %s (experiment %s): REST port %s, gRPC port %s", table.model,
                 table.experiment, self.rest_port, self.grpc_port)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.options.routes_poll_s)
            try:
                if await asyncio.to_thread(self.watcher.check):
                    self.pool.keep_only(list(self.watcher.table.upstreams.values()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("routing table check failed")

    async def stop(self, grace_s: float | None = None) -> None:
        grace = self.options.shutdown_grace_s if grace_s is None else grace_s
        self.front.draining = True
        if self._watch_task is not None:
            self._watch_task.cancel()
        await self.listeners.stop(grace)
        await self.backend.drain_mirrors(grace)
        await self.pool.close()
        for sink in self.sinks:
            await asyncio.to_thread(sink.close, min(grace, 10.0))
        if self.log_store is not None:
            self.log_store.close()
        if self.options.log_jsonl:
            self._jsonl.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # ------------------------------------------------------------ feedback

    def feedback_token(self) -> str | None:
        """The bearer token feedback needs (None: none); re-read when the file changes."""
        path = self.watcher.table.feedback_token_file
        if not path:
            return None
        try:
            mtime = os.stat(path).st_mtime
            if self._token_cache is None or self._token_cache[:2] != (path, mtime):
                self._token_cache = (path, mtime, Path(path).read_text().strip())
        except OSError as err:
            raise PermissionError(f"the feedback token file {path} cannot be read: {err.strerror}") from None
        return self._token_cache[2]

    async def feedback(self, request: Any) -> Any:
        from aiohttp import web

        from ingot.errors import NotFoundError
        from ingot.inference_log.feedback import (
            InvalidFeedback,
            LabelConflict,
            parse_feedback,
        )

        def answer(status: int, message: str, **headers: str) -> web.Response:
            return _json(status, {"error": message}, headers)

        if request.method != "POST":
            return answer(405, f"{request.method} {FEEDBACK_PATH} is not allowed; POST a label", Allow="POST")
        try:
            token = self.feedback_token()
        except PermissionError as err:
            return answer(503, str(err))
        if token is not None:
            sent = request.headers.get("Authorization", "")
            scheme, _, given = sent.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                return answer(401, "feedback needs 'Authorization: Bearer <token>' with the gateway's feedback token",
                              **{"WWW-Authenticate": 'Bearer realm="ingot-feedback"'})
        if self.log_store is None:
            return answer(503, "feedback needs the inference log, and this gateway runs without one")
        if request.content_length is not None and request.content_length > MAX_FEEDBACK_BYTES:
            return answer(413, f"feedback body exceeds the limit of {MAX_FEEDBACK_BYTES} bytes")
        try:
            body = await request.content.read(MAX_FEEDBACK_BYTES + 1)
            if len(body) > MAX_FEEDBACK_BYTES:
                return answer(413, f"feedback body exceeds the limit of {MAX_FEEDBACK_BYTES} bytes")
            import orjson

            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError as err:
                raise InvalidFeedback(f"feedback body is not JSON: {err}") from None
            items = parse_feedback(document)
            stored = await asyncio.to_thread(self._record_feedback, items)
        except InvalidFeedback as err:
            return answer(400, str(err))
        except NotFoundError as err:
            return answer(404, str(err))
        except LabelConflict as err:
            return answer(409, str(err))
        except _LogUnavailable as err:
            return answer(503, f"the inference log is unavailable, try again later: {err}")
        for label in stored:
            if label.created:
                self.metrics.labels.labels(label.model, label.variant, str(label.model_version or ""),
                                           "correct" if label.correct else "incorrect").inc()
        return _json(200, {"labels": [label.as_json() for label in stored]})

    def _record_feedback(self, items: Any) -> Any:
        from sqlalchemy.exc import OperationalError

        from ingot.errors import ConfigError

        assert self.log_store is not None
        try:
            return self.log_store.get().record_feedback(items, self.classes)
        except (OperationalError, ConfigError) as err:
            raise _LogUnavailable(str(getattr(err, "orig", None) or err).strip().splitlines()[0]) from None


class _LogUnavailable(Exception):
    pass


class _FanOut:
    """Submits each batch of records to every sink (the database and an optional JSONL file)."""

    def __init__(self, sinks: list[Any]) -> None:
        self._sinks = sinks

    def submit(self, records: Any) -> None:
        for sink in self._sinks:
            sink.submit(records)


def _json(status: int, document: Any, headers: dict[str, str] | None = None) -> Any:
    import orjson
    from aiohttp import web

    return web.Response(body=orjson.dumps(document), status=status, content_type="application/json",
                        headers=headers or None)


# ---------------------------------------------------------------- front ends


class GatewayRestApi(RestApi):
    """The shared REST front end, plus the feedback route and the gateway's metrics."""

    def __init__(self, front: FrontEnd, *, gateway: Gateway, **kw: Any) -> None:
        super().__init__(front, **kw)
        self.gateway = gateway

    async def handle_v1(self, request: Any) -> Any:
        if request.path == FEEDBACK_PATH:
            return await self.gateway.feedback(request)
        return await super().handle_v1(request)

    async def prometheus(self, request: Any) -> Any:
        from aiohttp import web

        text = self.front.metrics.render() + self.gateway.metrics.render().decode()
        return web.Response(text=text, content_type="text/plain")


# ---------------------------------------------------------------- running


class GatewayThread(ServiceThread):
    """A Gateway on its own event loop in a daemon thread (tests and benchmarks)."""

    name = "gateway"

    def make_service(self) -> Gateway:
        return Gateway(self.options)

    @property
    def gateway(self) -> Gateway | None:
        return self.service


def run_gateway(options: GatewayOptions) -> int:
    """Serve until SIGTERM or SIGINT, then shut down gracefully; returns the exit code."""

    async def main() -> None:
        gateway = Gateway(options)
        await gateway.start()
        table = gateway.watcher.table
        print(f"ingot gateway: model {table.model!r} experiment {table.experiment!r}: "
              f"REST on http://{options.host}:{gateway.rest_port}  gRPC on {options.host}:{gateway.grpc_port}  "
              f"(pid {os.getpid()})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("ingot gateway: shutting down (finishing in-flight requests, flushing the log)", flush=True)
        await gateway.stop()

    asyncio.run(main())
    return 0
