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
from dataclasses import dataclass, field
from typing import Any

from ingot.gateway.backend import GatewayBackend
from ingot.gateway.classes import ClassCatalog
from ingot.gateway.feedback_guard import FeedbackBusy, FeedbackForbidden, FeedbackRunner, check_labeller
from ingot.gateway.keys import FeedbackKeys
from ingot.gateway.logstore import LazyLogStore
from ingot.gateway.metrics import GatewayMetrics
from ingot.gateway.polling import RoutingPoller
from ingot.gateway.routing import RoutingTableWatcher
from ingot.gateway.upstream import UpstreamPool
from ingot.protocol.routes import FEEDBACK_PATH
from ingot.serving.frontend import FrontEnd, Listeners, ListenOptions, RequestLimits, ServiceThread
from ingot.serving.rest import RestApi
from ingot.settings import FEEDBACK_SECRET_FILE_ENV

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
    cache_timeout_s: float = 0.02  # a Redis call past this is a miss
    log_queue_size: int = 20_000
    model_repository: str | None = None  # model cards, for the class names feedback labels use
    routes_poll_s: float = 2.0
    limits: RequestLimits = field(default_factory=RequestLimits)
    rest_timeout_s: float | None = 30.0
    upstream_timeout_s: float = 30.0
    upstream_connections: int = 256
    max_mirrors_in_flight: int = 32
    max_mirror_bytes: int = 64 << 20  # bytes all mirrored copies in flight may hold together
    shutdown_grace_s: float = 30.0
    grpc_max_message_bytes: int = 64 << 20
    # Feedback: keys, who may label, and how long the log's database may keep it waiting.
    feedback_secret_file: str | None = None  # None: $INGOT_FEEDBACK_SECRET_FILE, else a per-process secret
    require_feedback_token: bool = False  # a rollout or monitor reads the log: the table must name a token
    feedback_workers: int = 4
    feedback_max_in_flight: int = 16  # beyond it feedback answers 503 at once
    label_wait_s: float = 2.0  # a label for a row not written yet waits this long before 404
    log_connect_timeout_s: float = 5.0
    log_statement_timeout_ms: int | None = 5_000  # PostgreSQL statement_timeout of the log's sessions
    log_lock_timeout_ms: int | None = 2_000  # PostgreSQL lock_timeout
    feedback_busy_timeout_ms: int = 2_000  # SQLite: a feedback transaction's wait for the write lock
    capture_url: str | None = None  # None: $INGOT_CAPTURE_URL, else ./.ingot/capture
    capture_queue_bytes: int = 64 << 20  # inputs waiting to be stored; more are dropped and counted


class Gateway:
    def __init__(self, options: GatewayOptions) -> None:
        from ingot.serving.metrics import ServingMetrics

        self.options = options
        self.watcher = RoutingTableWatcher(options.routes)
        self.keys = FeedbackKeys.from_file(options.feedback_secret_file or os.environ.get(FEEDBACK_SECRET_FILE_ENV))
        self.feedback_runner = FeedbackRunner(workers=options.feedback_workers,
                                              max_in_flight=options.feedback_max_in_flight,
                                              label_wait_s=options.label_wait_s)
        self.metrics = GatewayMetrics()
        self.pool = UpstreamPool(connections=options.upstream_connections,
                                 max_message_bytes=options.grpc_max_message_bytes)
        self.classes = ClassCatalog(options.model_repository)
        self.log_store: LazyLogStore | None = None
        self.sinks: list[Any] = []
        if options.log_enabled:
            from ingot.db import Timeouts
            from ingot.inference_log.sink import QueueSink

            timeouts = Timeouts(connect_s=options.log_connect_timeout_s, statement_ms=options.log_statement_timeout_ms,
                                lock_ms=options.log_lock_timeout_ms)
            self.log_store = LazyLogStore(options.log_url, timeouts=timeouts,
                                          feedback_busy_ms=options.feedback_busy_timeout_ms)
            self.sinks.append(QueueSink(self.log_store, max_queue=options.log_queue_size))
        if options.log_jsonl:
            from ingot.inference_log.sink import JsonlWriter, QueueSink

            self._jsonl = JsonlWriter(options.log_jsonl)
            self.sinks.append(QueueSink(self._jsonl, name="inference-log-jsonl", max_queue=options.log_queue_size))
        self.capture = _capture_writer(options, self.metrics)
        self.backend = GatewayBackend(
            lambda: self.watcher.table, self.pool, sink=_FanOut(self.sinks) if self.sinks else None,
            metrics=self.metrics, classes=self.classes, default_timeout_s=options.upstream_timeout_s,
            max_mirrors_in_flight=options.max_mirrors_in_flight, max_mirror_bytes=options.max_mirror_bytes,
            keys=self.keys, capture=self.capture,
        )
        if options.cache_url:
            from ingot.gateway.cache import PredictionCache

            self.backend.cache = PredictionCache(options.cache_url, timeout_s=options.cache_timeout_s)
        self.metrics.watch(self._readings)
        self.serving_metrics = ServingMetrics()
        self.serving_metrics.model_known = lambda name: name == self.watcher.table.model
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
        self._poller: RoutingPoller | None = None
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
            **self._resilience_readings(),
        }

    def _resilience_readings(self) -> dict[str, float]:
        """The prediction cache's counts (when there is one) and the upstream breakers not closed."""
        readings: dict[str, float] = {"ingot_gateway_breakers_open": sum(
            state != "closed" for state in self.backend.breakers.states().values())}
        cache = self.backend.cache
        if cache is not None:
            stats = cache.stats
            readings.update({"ingot_gateway_cache_hits": stats.hits, "ingot_gateway_cache_misses": stats.misses,
                             "ingot_gateway_cache_errors": stats.errors, "ingot_gateway_cache_skipped": stats.skipped,
                             "ingot_gateway_cache_too_large": stats.too_large})
        return readings

    @property
    def rest_port(self) -> int | None:
        return self.listeners.rest_port

    @property
    def grpc_port(self) -> int | None:
        return self.listeners.grpc_port

    async def start(self) -> None:
        await self.pool.start()
        await self.listeners.start()
        loop = asyncio.get_running_loop()
        self._poller = RoutingPoller(self.watcher, self.options.routes_poll_s, lambda table: loop.call_soon_threadsafe(
            self.pool.keep_only, table.all_upstreams()))
        self._poller.start()
        table = self.watcher.table
        log.info("gateway for model %s (experiment %s): REST port %s, gRPC port %s", table.model,
                 table.experiment, self.rest_port, self.grpc_port)

    async def stop(self, grace_s: float | None = None) -> None:
        grace = self.options.shutdown_grace_s if grace_s is None else grace_s
        self.front.draining = True
        if self._poller is not None:
            await asyncio.to_thread(self._poller.stop)
        await self.listeners.stop(grace)
        await self.backend.drain_mirrors(grace)
        await self.pool.close()
        await asyncio.to_thread(self.backend.recorder.drain)
        for sink in self.sinks:
            await asyncio.to_thread(sink.close, min(grace, 10.0))
        self.feedback_runner.close()
        await asyncio.to_thread(self.capture.close, min(grace, 10.0))
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
        from ingot.errors import ConfigError
        from ingot.storage import read_token_file

        try:
            mtime = os.stat(path).st_mtime
            if self._token_cache is None or self._token_cache[:2] != (path, mtime):
                self._token_cache = (path, mtime, read_token_file(path, what="the feedback token file"))
        except OSError as err:
            raise PermissionError(f"the feedback token file {path} cannot be read: {err.strerror}") from None
        except ConfigError as err:  # emptied or shortened while running: refuse, never accept
            self._token_cache = None
            raise PermissionError(str(err)) from None
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
        if self.options.require_feedback_token and not self.watcher.table.feedback_token_file:
            return answer(503, "this gateway requires a feedback token (--require-feedback-token) and its routing "
                               "table names no feedback_token_file")
        try:
            token = self.feedback_token()
        except PermissionError as err:
            return answer(503, str(err))
        token_given = "Authorization" in request.headers  # checked below: 401 unless it is the token
        if token is not None and token_given:
            sent = request.headers.get("Authorization", "")
            scheme, _, given = sent.partition(" ")
            given = given.strip()
            if (scheme.lower() != "bearer" or not given or not token
                    or not hmac.compare_digest(given.encode(), token.encode())):
                return answer(401, "feedback needs 'Authorization: Bearer <token>' with the gateway's feedback token",
                              **{"WWW-Authenticate": 'Bearer realm="ingot-feedback"'})
        if self.log_store is None:
            return answer(503, "feedback needs the inference log, and this gateway runs without one")
        if request.content_length is not None and request.content_length > MAX_FEEDBACK_BYTES:
            return answer(413, f"feedback body exceeds the limit of {MAX_FEEDBACK_BYTES} bytes")
        try:
            body = await self._feedback_body(request)
        except _BodyRefused as err:
            if err.status == 408:
                request.protocol.force_close()
            return answer(err.status, str(err))
        try:
            import orjson

            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError as err:
                raise InvalidFeedback(f"feedback body is not JSON: {err}") from None
            items = parse_feedback(document)
            _no_repeated_rows(items, InvalidFeedback)
            classes = self.classes if not all(_is_class_id(item.label) for item in items) else self.classes.by_id
            check_labeller(items, self.keys, token_required=token is not None, token_ok=token is not None and token_given)
            stored = await self.feedback_runner.run(lambda: self._record_feedback(items, classes), unavailable=(_LogUnavailable,))
        except FeedbackForbidden as err:
            return answer(403, str(err))
        except FeedbackBusy as err:
            return answer(503, str(err), **{"Retry-After": str(max(1, round(err.retry_after_s)))})
        except InvalidFeedback as err:
            return answer(400, str(err))
        except NotFoundError as err:
            return answer(404, str(err))
        except LabelConflict as err:
            # Never the stored label: it is someone else's answer.
            return answer(409, f"{_conflicting_row(str(err))} is already labelled with a different label; "
                               "labels are never overwritten")
        except _LogUnavailable as err:
            return answer(503, f"the inference log is unavailable, try again later: {err}")
        for label in stored:
            if label.created:
                self.metrics.labels.labels(label.model, label.variant, str(label.model_version or ""),
                                           "correct" if label.correct else "incorrect").inc()
        return _json(200, {"labels": [label.as_json() for label in stored]})

    async def _feedback_body(self, request: Any) -> bytes:
        """The whole body, however many TCP segments it arrives in, within the size limit and the
        front end's body timeout."""
        from aiohttp import web

        limit = MAX_FEEDBACK_BYTES
        chunks: list[bytes] = []
        size = 0
        timeout_s = self.options.limits.body_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    chunk = await request.content.read(1 << 16)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise _BodyRefused(413, f"feedback body exceeds the limit of {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise _BodyRefused(408, f"the feedback body did not arrive within {timeout_s:g} s") from None
        except (web.RequestPayloadError, ConnectionError) as err:
            raise _BodyRefused(400, f"the feedback body is malformed: {str(err)[:200]}") from None
        return b"".join(chunks)

    def _record_feedback(self, items: Any, classes: Any) -> Any:
        from sqlalchemy.exc import OperationalError

        from ingot.errors import ConfigError

        assert self.log_store is not None
        try:
            return self.log_store.get().record_feedback(items, classes)
        except (OperationalError, ConfigError) as err:
            raise _LogUnavailable(str(getattr(err, "orig", None) or err).strip().splitlines()[0]) from None


def _capture_writer(options: GatewayOptions, metrics: GatewayMetrics) -> Any:
    """The capture writer (idle until the routing table sets `capture.sample`), its metrics registered."""
    from ingot import settings
    from ingot.capture.metrics import CaptureCollector
    from ingot.capture.writer import CaptureWriter

    writer = CaptureWriter(settings.capture_url(options.capture_url), max_queue_bytes=options.capture_queue_bytes)
    metrics.registry.register(CaptureCollector(writer))
    return writer


class _LogUnavailable(Exception):
    pass


class _BodyRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


MAX_REPEATS_SHOWN = 5


def _no_repeated_rows(items: Any, error: type[Exception]) -> None:
    """`error` naming the (request_id, row) pairs a feedback body gives more than once."""
    seen: set[tuple[str, int]] = set()
    repeated: list[tuple[str, int]] = []
    for item in items:
        key = (item.request_id, item.row)
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    if repeated:
        shown = ", ".join(f"request {rid!r} row {row}" for rid, row in repeated[:MAX_REPEATS_SHOWN])
        more = f" and {len(repeated) - MAX_REPEATS_SHOWN} more" if len(repeated) > MAX_REPEATS_SHOWN else ""
        raise error(f"feedback body labels the same row more than once: {shown}{more}; "
                    "give each (request_id, row) once")


def _is_class_id(label: Any) -> bool:
    return (isinstance(label, int) and not isinstance(label, bool)) or (
        isinstance(label, str) and label.isascii() and label.isdigit())


def _conflicting_row(message: str) -> str:
    """`request '<id>' row <n>` from the log's conflict message (the rest of it names the stored
    label, which is not the caller's to see)."""
    import re

    found = re.match(r"(request (?:'[^']*'|\"[^\"]*\") row \d+)", message)
    return found.group(1) if found else "the row"


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
