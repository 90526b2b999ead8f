"""The model server process: model manager + REST (aiohttp) + gRPC (grpc.aio) on one event loop.

`ModelServer` is the async object; `ServerThread` runs one in a background thread (tests and
benchmarks start several in one process); `run_server` is what `ingot serve` calls: it serves
until SIGTERM/SIGINT, then shuts down gracefully: readiness turns false, the listeners close (no
new connections), in-flight requests finish (up to the grace period), queued batches drain, the
models unload, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingot.serving.config import MonitoringOptions, load_model_server_config, model_config_text, model_roots
from ingot.serving.frontend import FrontEnd, Listeners, ListenOptions, RequestLimits, ServiceThread
from ingot.serving.local import LocalBackend
from ingot.serving.manager import ManagerOptions, ModelManager, State
from ingot.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)


@dataclass
class ServerOptions:
    model_config: Any  # ModelServerConfig
    host: str = "127.0.0.1"
    grpc_port: int | None = 8500  # None or 0 with grpc_enabled False disables; 0 picks a free port
    rest_port: int | None = 8501
    manager: ManagerOptions = field(default_factory=ManagerOptions)
    limits: RequestLimits = field(default_factory=RequestLimits)
    monitoring: MonitoringOptions = field(default_factory=MonitoringOptions)
    rest_timeout_s: float | None = 30.0
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    shutdown_grace_s: float = 30.0
    grpc_max_message_bytes: int = 64 << 20
    # ModelService.HandleReloadConfigRequest: off unless allowed; then loopback callers only, and
    # only base paths under these roots (default: the configured models' base paths).
    allow_model_config_reload: bool = False
    model_roots: tuple[str, ...] | None = None


class ModelServer:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.metrics = ServingMetrics()
        self.manager = ModelManager(options.model_config, options.manager, on_state=self._on_state, metrics=self.metrics)
        self.metrics.model_known = self.manager.is_configured
        roots = options.model_roots if options.model_roots is not None else model_roots(options.model_config)
        self.backend = LocalBackend(self.manager, allow_reload=options.allow_model_config_reload, model_roots=roots)
        self.front = FrontEnd(self.backend, self.metrics, options.limits)
        self.listeners = Listeners(self.front, ListenOptions(
            host=options.host, rest_port=options.rest_port, grpc_port=options.grpc_port,
            metrics_path=options.monitoring.prometheus_path if options.monitoring.prometheus_enabled else None,
            rest_timeout_s=options.rest_timeout_s, grpc_max_message_bytes=options.grpc_max_message_bytes,
            shutdown_grace_s=options.shutdown_grace_s,
        ))
        self._config_task: asyncio.Task | None = None
        self._stopped = asyncio.Event()

    def _on_state(self, name: str, version: int, state: State) -> None:
        self.metrics.model_state.labels(name, str(version)).set(int(state))
        if state == State.LOADING:
            self.metrics.prepare_version(name, version)

    @property
    def rest_port(self) -> int | None:
        return self.listeners.rest_port

    @property
    def grpc_port(self) -> int | None:
        return self.listeners.grpc_port

    async def start(self) -> None:
        opts = self.options
        await self.listeners.start()
        self.manager.start()
        if opts.model_config_file and opts.model_config_file_poll_wait_seconds > 0:
            self._config_task = asyncio.create_task(self._poll_config_file())
        log.info("listening: REST port %s, gRPC port %s on %s", self.rest_port, self.grpc_port, opts.host)

    async def _poll_config_file(self) -> None:
        """Reload --model_config_file when its content changes (TF Serving's
        --model_config_file_poll_wait_seconds); a broken edit is logged once and ignored."""
        from pathlib import Path

        path = Path(self.options.model_config_file)
        applied = model_config_text(self.options.model_config)
        seen = None
        while True:
            await asyncio.sleep(self.options.model_config_file_poll_wait_seconds)
            try:
                raw = await asyncio.to_thread(path.read_text)
            except OSError as err:
                raw = f"<unreadable: {err}>"
            if raw == seen:
                continue
            seen = raw
            try:
                config = await asyncio.to_thread(load_model_server_config, path)
                if model_config_text(config) != applied:
                    log.info("model config file %s changed; reloading", path)
                    await asyncio.to_thread(self.manager.reload_config, config)
                    applied = model_config_text(config)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.error("model config reload from %s failed (keeping the current config): %s", path, err)

    async def stop(self, grace_s: float | None = None) -> None:
        """Graceful: not ready, stop listening, finish in-flight requests, drain batches, unload."""
        grace = self.options.shutdown_grace_s if grace_s is None else grace_s
        self.front.draining = True
        if self._config_task is not None:
            self._config_task.cancel()
        await self.listeners.stop(grace)
        await asyncio.to_thread(self.manager.stop)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


class ServerThread(ServiceThread):
    """A ModelServer on its own event loop in a daemon thread; `start()` returns once the ports
    are bound (models load in the background: use `wait_until_ready`)."""

    name = "model-server"

    def make_service(self) -> ModelServer:
        return ModelServer(self.options)

    @property
    def server(self) -> ModelServer | None:
        return self.service  # type: ignore[no-any-return]

    @property
    def manager(self) -> ModelManager:
        assert self.service is not None
        return self.service.manager  # type: ignore[no-any-return]

    def wait_until_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.manager.readiness()["ready"]:
                return
            time.sleep(0.02)
        raise TimeoutError(f"models not ready after {timeout_s}s: {self.manager.readiness()}")


def run_server(options: ServerOptions, *, banner: Callable[[ModelServer], str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then shut down gracefully. Returns the exit code."""

    async def main() -> None:
        server = ModelServer(options)
        await server.start()
        rest = f"REST on http://{options.host}:{server.rest_port}" if server.rest_port else "REST disabled"
        grpc_text = f"gRPC on {options.host}:{server.grpc_port}" if server.grpc_port else "gRPC disabled"
        print(f"ingot serve: {rest}  {grpc_text}  (pid {os.getpid()})", flush=True)
        if banner is not None:
            print(banner(server), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("signal received: draining in-flight requests, then exiting")
        print("ingot serve: shutting down (finishing in-flight requests)", flush=True)
        await server.stop()

    asyncio.run(main())
    return 0

