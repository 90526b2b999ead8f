"""Model lifecycle: which versions each model serves, loading them, rolling over, unloading.

Mirrors TF Serving's ServerCore + availability-preserving policy:
- every poll lists the numeric version directories of each model (`.tmp-*` and other
  non-numeric names are never looked at) and applies the model's version policy;
- a new version goes START → LOADING → (SavedModel load, warm-up replay) → AVAILABLE;
- a version that is no longer wanted goes UNLOADING → END only once a wanted version is
  AVAILABLE, so a model never drops to zero serving versions during a rollover;
- a version that fails to load goes to END with its error in `status` (GetModelStatus shows it)
  and whatever served before keeps serving; the load is retried `max_num_load_retries` times,
  `load_retry_interval_s` apart (TF Serving's flags).
Requests resolve a model spec to a `Servable` through `resolve()`; a request keeps the servable it
resolved even if that version starts unloading, and unloading drains queued work first.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingot import repository, storage
from ingot.protocol.status import Code, ServingError, invalid_argument, not_found
from ingot.serving.config import BatchingOptions, aspired_versions, numeric_versions

log = logging.getLogger(__name__)


class State(enum.IntEnum):
    """ModelVersionStatus.State numbers."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass
class ManagerOptions:
    batching: BatchingOptions | None = None
    enable_model_warmup: bool = True
    warmup_iterations: int = 1
    warmup_threads: int = 2  # signatures warmed at once (TF Serving's num_model_warmup_threads)
    file_system_poll_wait_seconds: float = 1.0
    max_num_load_retries: int = 5
    load_retry_interval_s: float = 60.0
    max_elements: int = 1 << 24
    verify_manifest: bool = True
    direct_threads: int = 4
    direct_max_pending: int = 256
    freeze_gc: bool = True
    prefer_tflite_model: bool = False  # serve a version's model.tflite when it has one (ingot.serving.tflite)
    tflite_interpreters: int = 1  # LiteRT interpreters per version with prefer_tflite_model


@dataclass
class VersionRecord:
    model_name: str
    version: int
    path: str
    state: State = State.START
    error: ServingError | None = None
    servable: Any = None
    load_attempts: int = 0
    last_attempt_at: float = 0.0
    loading_started_at: float | None = None
    available_at: float | None = None
    unloaded_at: float | None = None
    warmup_requests_replayed: int = 0
    warmup_batch_sizes: dict[str, list[int]] = field(default_factory=dict)
    warmup_seconds: float = 0.0
    load_seconds: float = 0.0

    def snapshot(self) -> VersionStatus:
        return VersionStatus(
            self.version, self.state,
            self.error.code if self.error else Code.OK,
            self.error.message if self.error else "",
        )


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: State
    error_code: Code
    error_message: str


class ModelManager:
    def __init__(
        self,
        model_server_config: Any,
        options: ManagerOptions,
        *,
        make_servable: Callable[..., Any] | None = None,
        on_state: Callable[[str, int, State], None] | None = None,
        metrics: Any = None,
    ) -> None:
        self.options = options
        self._config = model_server_config
        self._models: dict[str, dict[int, VersionRecord]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._lock = threading.RLock()  # guards _models/_labels/_config; held briefly
        self._reconcile_lock = threading.Lock()  # one reconcile (poll or reload) at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._make_servable = make_servable or self._default_make_servable
        self._on_state = on_state
        self._metrics = metrics
        self._direct_pool = None
        self._graveyard: list[Any] = []  # unloaded servables, freed at the next poll
        self.polls = 0
        self._apply_labels(model_server_config)

    # -- configuration

    @property
    def config(self) -> Any:
        with self._lock:
            return self._config

    def is_configured(self, name: str) -> bool:
        """Whether `name` is one of the configured models (a dict lookup: the metrics' hot path)."""
        return name in self._labels

    def model_names(self) -> list[str]:
        with self._lock:
            return [m.name for m in self._config.model_config_list.config]

    def _apply_labels(self, config: Any) -> None:
        labels = {m.name: dict(m.version_labels) for m in config.model_config_list.config}
        with self._lock:
            self._labels = labels

    def reload_config(self, config: Any, *, timeout_s: float = 300.0) -> None:
        """Swap the model config (HandleReloadConfigRequest): load added models, unload removed
        ones, apply changed policies and labels. Raises the load error of a newly added model that
        could not become available."""
        with self._lock:
            old = {m.name for m in self._config.model_config_list.config}
        deadline = time.monotonic() + timeout_s
        if not self._reconcile_lock.acquire(timeout=timeout_s):
            raise ServingError(Code.DEADLINE_EXCEEDED, "timed out waiting for a model load in progress")
        try:
            with self._lock:
                self._config = config
            self._apply_labels(config)
            self._reconcile_locked()
        finally:
            self._reconcile_lock.release()
        added = [m.name for m in config.model_config_list.config if m.name not in old]
        for name in added:
            if time.monotonic() > deadline:
                raise ServingError(Code.DEADLINE_EXCEEDED, f"model {name} did not load in time")
            if self.latest_available(name) is None:
                errors = [r.error for r in self._records(name) if r.error is not None]
                if errors:
                    raise errors[0]
                raise not_found(f"model {name}: no versions found under its base path")

    # -- polling

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._release_unloaded()
                self.poll_once()
            except Exception:  # a poll must never kill the poller
                log.exception("model poll failed")
            wait = self.options.file_system_poll_wait_seconds
            if wait <= 0:
                return  # TF Serving: 0 polls once
            self._stop.wait(wait)

    def _release_unloaded(self) -> None:
        if not self._graveyard:
            return
        self._graveyard.clear()
        if self.options.freeze_gc:
            freeze_heap(reclaim=True)

    def poll_once(self) -> None:
        with self._reconcile_lock:
            self._reconcile_locked()
        self.polls += 1

    def _reconcile_locked(self) -> None:
        with self._lock:
            configs = list(self._config.model_config_list.config)
            configured = {m.name for m in configs}
            removed = [n for n in self._models if n not in configured]
        for model in configs:
            if self._stop.is_set():
                return
            self._reconcile_model(model)
        for name in removed:
            for record in self._records(name):
                if record.state == State.AVAILABLE:
                    self._unload(record)
            with self._lock:
                self._models.pop(name, None)

    def _reconcile_model(self, model: Any) -> None:
        name = model.name
        on_disk = numeric_versions(model.base_path)
        wanted = aspired_versions(model.model_version_policy, on_disk)
        with self._lock:
            versions = self._models.setdefault(name, {})
            to_load = []
            now = time.monotonic()
            for version in wanted:  # newest first
                record = versions.get(version)
                if record is None:
                    record = VersionRecord(name, version, storage.join(model.base_path, str(version)))
                    versions[version] = record
                    self._set_state(record, State.START)
                    to_load.append(record)
                elif record.state == State.END and self._may_retry(record, now):
                    to_load.append(record)
        for record in to_load:
            if self._stop.is_set():
                return
            self._load(record)
        wanted_set = set(wanted)
        if any(self._state_of(name, v) == State.AVAILABLE for v in wanted):
            for record in self._records(name):
                if record.state == State.AVAILABLE and record.version not in wanted_set:
                    self._unload(record)

    def _may_retry(self, record: VersionRecord, now: float) -> bool:
        if record.error is None:
            return True  # unloaded earlier and wanted again
        if record.load_attempts > self.options.max_num_load_retries:
            return False
        return now - record.last_attempt_at >= self.options.load_retry_interval_s

    # -- loading and unloading

    def _default_make_servable(self, record: VersionRecord) -> Any:
        from ingot.serving.servable import DirectPool, Servable

        with self._lock:
            if self._direct_pool is None:
                self._direct_pool = DirectPool(self.options.direct_threads, self.options.direct_max_pending)
        on_runtime = on_batch = None
        metrics = self._metrics
        if metrics is not None:
            name, version = record.model_name, record.version
            on_runtime = lambda seconds: metrics.record_runtime(name, version, seconds)  # noqa: E731
            on_batch = lambda signature, size, padded, seconds: metrics.batch_size.labels(  # noqa: E731
                name, str(version), signature).observe(size)
        kind: Any = Servable
        extra: dict[str, Any] = {}
        if self.options.prefer_tflite_model:
            from ingot.serving.tflite import TfliteServable, has_tflite_model

            if has_tflite_model(record.path):
                kind, extra = TfliteServable, {"interpreters": self.options.tflite_interpreters}
        return kind(
            record.model_name, record.version, record.path,
            batching=self.options.batching, direct_pool=self._direct_pool,
            max_elements=self.options.max_elements, on_runtime=on_runtime, on_batch=on_batch, **extra,
        )

    def _load(self, record: VersionRecord) -> None:
        with self._lock:
            record.load_attempts += 1
            record.last_attempt_at = time.monotonic()
            record.loading_started_at = time.monotonic()
            record.error = None
            self._set_state(record, State.LOADING)
        servable = None
        try:
            if self.options.verify_manifest:
                verify_version_manifest(record.path)
            servable = self._make_servable(record)
            t0 = time.perf_counter()
            servable.load()
            record.load_seconds = time.perf_counter() - t0
            if self.options.enable_model_warmup:
                stats = servable.warm_up(iterations=self.options.warmup_iterations,
                                         threads=self.options.warmup_threads)
                record.warmup_requests_replayed = stats.requests_replayed
                record.warmup_batch_sizes = dict(stats.batch_sizes_run)
                record.warmup_seconds = stats.seconds
                if self._metrics is not None and stats.requests_replayed:
                    self._metrics.record_warmup(record.path, stats.seconds)
        except Exception as err:
            error = err if isinstance(err, ServingError) else _as_serving_error(err)
            log.error("model %s version %s failed to load: %s", record.model_name, record.version, error.message)
            if servable is not None:
                try:
                    servable.unload()
                except Exception:
                    log.exception("cleanup after a failed load")
            with self._lock:
                record.error = error
                record.servable = None
                self._set_state(record, State.END)
            return
        if self.options.freeze_gc:
            freeze_heap()
        with self._lock:
            record.servable = servable
            record.available_at = time.monotonic()
            self._set_state(record, State.AVAILABLE)
        log.info("model %s version %s is AVAILABLE (load %.2fs, warm-up %d requests %.2fs)",
                 record.model_name, record.version, record.load_seconds,
                 record.warmup_requests_replayed, record.warmup_seconds)

    def _unload(self, record: VersionRecord) -> None:
        with self._lock:
            servable = record.servable
            self._set_state(record, State.UNLOADING)  # resolve() no longer returns it
        if servable is not None:
            try:
                servable.unload()
            except Exception:
                log.exception("unloading %s version %s", record.model_name, record.version)
        with self._lock:
            record.servable = None
            record.unloaded_at = time.monotonic()
            self._set_state(record, State.END)
        # Destroying the old model (its Python objects, and with freeze_gc one full collection
        # for its reference cycles, ~0.2 s holding the GIL) would stall the new version's first
        # requests, which arrive right now; the next poll does it instead.
        if self.options.file_system_poll_wait_seconds > 0:
            self._graveyard.append(servable)
        elif self.options.freeze_gc:
            del servable
            freeze_heap(reclaim=True)
        log.info("model %s version %s unloaded", record.model_name, record.version)

    def _set_state(self, record: VersionRecord, state: State) -> None:
        record.state = state
        if self._on_state is not None:
            try:
                self._on_state(record.model_name, record.version, state)
            except Exception:
                log.exception("state callback failed")

    # -- queries

    def _records(self, name: str) -> list[VersionRecord]:
        with self._lock:
            return sorted(self._models.get(name, {}).values(), key=lambda r: -r.version)

    def _state_of(self, name: str, version: int) -> State | None:
        with self._lock:
            record = self._models.get(name, {}).get(version)
            return record.state if record else None

    def record(self, name: str, version: int) -> VersionRecord | None:
        with self._lock:
            return self._models.get(name, {}).get(version)

    def latest_available(self, name: str) -> VersionRecord | None:
        for record in self._records(name):
            if record.state == State.AVAILABLE:
                return record
        return None

    def _labelled_version(self, name: str, label: str) -> int:
        """The version a label points at, with TF Serving's error for an unknown label."""
        with self._lock:
            mapped = self._labels.get(name, {}).get(label)
        if mapped is None:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return mapped

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Any:
        """A model spec → the Servable to run, with TF Serving's errors."""
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        if version is not None and label:
            raise invalid_argument(
                f"Both model version ({version}) and model version label ({label}) cannot be supplied."
            )
        if label:
            version = self._labelled_version(name, label)
        with self._lock:
            if version is None:
                for v in sorted(self._models.get(name, {}), reverse=True):
                    record = self._models[name][v]
                    if record.state == State.AVAILABLE and record.servable is not None:
                        return record.servable
                raise not_found(f"Servable not found for request: Latest({name})")
            record = self._models.get(name, {}).get(int(version))
            if record is None or record.state != State.AVAILABLE or record.servable is None:
                raise not_found(f"Servable not found for request: Specific({name}, {version})")
            return record.servable

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        """GetModelStatus: every version the manager knows (newest first), or one."""
        if not name:
            raise invalid_argument("Missing model name in request.")
        if label:
            version = self._labelled_version(name, label)
        records = self._records(name)
        if version is not None:
            records = [r for r in records if r.version == int(version)]
            if not records:
                raise not_found(f"Could not find version {version} of model {name}")
        elif not records:
            raise not_found(f"Could not find any versions of model {name}")
        with self._lock:
            return [r.snapshot() for r in records]

    def readiness(self) -> dict[str, Any]:
        """Per configured model: its AVAILABLE versions. Ready when every model has one."""
        models = {}
        for name in self.model_names():
            available = [r.version for r in self._records(name) if r.state == State.AVAILABLE]
            models[name] = available
        return {"ready": bool(models) and all(models.values()), "models": models}

    def labels(self, name: str) -> dict[str, int]:
        with self._lock:
            return dict(self._labels.get(name, {}))

    # -- shutdown

    def stop(self) -> None:
        """Stop polling, drain and unload every version."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._reconcile_lock:
            for name in list(self._models):
                for record in self._records(name):
                    if record.state == State.AVAILABLE:
                        self._unload(record)
        self._graveyard.clear()
        if self._direct_pool is not None:
            self._direct_pool.shutdown()


def freeze_heap(*, reclaim: bool = False) -> None:
    """Move every object alive now (TensorFlow's and the models': hundreds of thousands) out of
    the garbage collector's reach (gc.freeze).

    Without this, each full collection walks them all (~0.2 s holding the GIL) and requests that
    allocate many objects (a large JSON body) trigger collections often: parsing a 160x160 image
    body took 4x longer. After an unload, `reclaim` unfreezes and collects once, so the old
    version's reference cycles (its weights among them) are freed, then freezes again: one
    full-collection pause per rollover, a poll interval after the swap.
    """
    import gc

    if reclaim:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


def _as_serving_error(err: BaseException) -> ServingError:
    try:
        from ingot.serving.servable import serving_error_from

        return serving_error_from(err)
    except Exception:
        return ServingError(Code.UNKNOWN, f"{type(err).__name__}: {err}")


def verify_version_manifest(path: str) -> None:
    """Check MANIFEST.sha256 when a version has one (Ingot's publish writes it), so a corrupted
    or tampered copy is refused with DATA_LOSS instead of served."""
    if not storage.exists(storage.join(path, repository.MANIFEST_FILE)):
        return
    try:
        repository.verify_manifest(path)
    except Exception as err:  # noqa: BLE001 - any failure means "do not serve this"
        raise ServingError(Code.DATA_LOSS, f"manifest check failed: {err}") from None
