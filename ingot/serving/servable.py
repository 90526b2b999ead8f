"""One loaded model version: its signatures, how requests reach the model, and warm-up.

Imports TensorFlow; only the server process and tests import this module.

Each signature gets a runner: a `BatchScheduler` + `BatchProcessor` when batching is on (and the
signature's inputs all have a batch dimension), else a bounded direct runner. Warm-up replays, and
the extra warm-up of every allowed batch size the records did not reach, run through the same
processor as requests (merge, pad, the signature's concrete function, split), only without
waiting in the queue, so every shape the server will run after AVAILABLE has run before it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingot import repository, storage
from ingot.protocol.signatures import SERVING_DEFAULT, SERVING_EMBEDDING
from ingot.protocol.status import Code, ServingError, invalid_argument, unavailable
from ingot.protocol.tensors import (
    SignatureSpec,
    array_from_proto,
    check_input_names,
    find_signature,
    signature_from_def,
)
from ingot.serving.batching import BatchProcessor, BatchScheduler, Task, shape_key
from ingot.serving.config import BatchingOptions

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = SERVING_DEFAULT
# Signatures no caller waits on (the drift monitor's): warmed by their records, never per padded size.
OFF_REQUEST_PATH = frozenset({SERVING_EMBEDDING})
MAX_WARMUP_RECORDS = 1000

Arrays = dict[str, np.ndarray]


class ServableUnloaded(ServingError):
    """This version started unloading between the request resolving it and submitting to it."""

    def __init__(self, name: str, version: int) -> None:
        super().__init__(Code.UNAVAILABLE, f"version {version} of model {name} was unloaded; retry")


def clean_tf_message(message: str) -> str:
    """The human part of a TensorFlow runtime error, without graph node dumps."""
    keep = []
    for raw in str(message).splitlines():
        line = raw.replace("<stack traces unavailable>", "").strip()
        if not line or line.startswith(("Graph execution error", "Detected at node", "[[", "[Op:")):
            continue
        if "[[{{node" in line:
            line = line.split("[[{{node")[0].strip()
        if " [Op:" in line:
            line = line.split(" [Op:")[0].strip()
        if line:
            keep.append(line)
    return " ".join(keep) or str(message).strip()


def serving_error_from(err: BaseException) -> ServingError:
    """Map any exception from a model call to a ServingError with TF's code."""
    if isinstance(err, ServingError):
        return err
    import tensorflow as tf

    if isinstance(err, tf.errors.OpError):
        return ServingError(Code(err.error_code), clean_tf_message(err.message))
    if isinstance(err, (ValueError, TypeError)):
        return invalid_argument(clean_tf_message(str(err)))
    return ServingError(Code.INTERNAL, f"{type(err).__name__}: {err}")


def is_data_error(err: BaseException) -> bool:
    try:
        return serving_error_from(err).code in (Code.INVALID_ARGUMENT, Code.OUT_OF_RANGE)
    except Exception:
        return False


class DirectRunner:
    """Unbatched: each request is its own model call on a shared thread pool, with a cap on
    requests waiting so overload answers UNAVAILABLE instead of queueing without bound."""

    def __init__(self, call: Callable[[Arrays], Arrays], pool: DirectPool) -> None:
        self._call = call
        self._pool = pool
        self.executed_sizes: set[int] = set()

    def submit(self, inputs: Arrays, size: int) -> Future:
        self.executed_sizes.add(size)
        return self._pool.submit(self._call, inputs)

    def run_now(self, inputs: Arrays, size: int) -> Arrays:
        self.executed_sizes.add(size)
        return self._call(inputs)

    def stop(self) -> None:
        pass


class DirectPool:
    def __init__(self, threads: int, max_pending: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="model")
        self._max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable, *args: Any) -> Future:
        with self._lock:
            if self._pending >= self._max_pending:
                raise unavailable(
                    f"the server is at its limit of {self._max_pending} requests in progress; retry later"
                )
            self._pending += 1
        future = self._executor.submit(fn, *args)
        future.add_done_callback(self._release)
        return future

    def _release(self, _: Future) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)


class BatchedRunner:
    def __init__(self, call: Callable[[Arrays], Arrays], options: BatchingOptions, *, name: str,
                 on_batch: Callable[[int, int, float], None] | None = None) -> None:
        self.processor = BatchProcessor(call, options, is_data_error=is_data_error, on_batch=on_batch)
        self.scheduler = BatchScheduler(options, self.processor, name=name)

    @property
    def executed_sizes(self) -> set[int]:
        return self.processor.executed_sizes

    def submit(self, inputs: Arrays, size: int) -> Future:
        return self.scheduler.schedule(inputs, size)

    def run_now(self, inputs: Arrays, size: int) -> Arrays:
        """Through the batch processor (merge, pad, call, split) without queueing: warm-up must
        not wait out batch_timeout_micros."""
        task = Task(inputs, size, shape_key(inputs))
        self.processor([task])
        return task.future.result()

    def stop(self) -> None:
        self.scheduler.stop()


@dataclass
class WarmupStats:
    records: int = 0
    requests_replayed: int = 0
    extra_batch_sizes: list[int] = field(default_factory=list)
    seconds: float = 0.0
    batch_sizes_run: dict[str, list[int]] = field(default_factory=dict)


class Servable:
    """A loaded SavedModel version. Construct, then `load()`, `warm_up()`, serve, `unload()`."""

    def __init__(
        self,
        name: str,
        version: int,
        path: str | os.PathLike,
        *,
        batching: BatchingOptions | None,
        direct_pool: DirectPool,
        max_elements: int,
        on_runtime: Callable[[float], None] | None = None,
        on_batch: Callable[[str, int, int, float], None] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.path = os.fspath(path)
        self.batching = batching
        self._direct_pool = direct_pool
        self.max_elements = max_elements
        self._on_runtime = on_runtime
        self._on_batch = on_batch
        self.signatures: dict[str, SignatureSpec] = {}
        self.signature_defs: dict[str, Any] = {}
        self._runners: dict[str, Any] = {}
        self._loaded: Any = None
        self.unloaded = False
        self.warmup = WarmupStats()
        self.first_request_at: float | None = None  # time.monotonic() of the first real request

    # -- loading

    def load(self) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        pb_path = storage.join(self.path, "saved_model.pb")
        if not storage.exists(pb_path):
            raise ServingError(Code.NOT_FOUND, f"no saved_model.pb in {self.path}")
        saved = saved_model_pb2.SavedModel()
        try:
            with storage.open_file(pb_path, "rb") as handle:
                saved.ParseFromString(handle.read())
        except Exception as err:  # a truncated or foreign file
            raise ServingError(Code.DATA_LOSS, f"cannot parse {pb_path}: {err}") from None
        graphs = [g for g in saved.meta_graphs if "serve" in g.meta_info_def.tags] or list(saved.meta_graphs)
        if not graphs:
            raise ServingError(Code.INVALID_ARGUMENT, f"{pb_path} has no MetaGraph tagged 'serve'")
        try:
            loaded = tf.saved_model.load(str(self.path), tags=["serve"])
        except Exception as err:
            raise serving_error_from(err) from None
        self._loaded = loaded
        for sig_name, sig_def in sorted(graphs[0].signature_def.items()):
            if sig_name.startswith("__"):  # __saved_model_init_op and friends are not signatures
                continue
            if sig_name not in loaded.signatures:
                continue
            spec = signature_from_def(sig_name, sig_def)
            self.signatures[sig_name] = spec
            self.signature_defs[sig_name] = sig_def
            self._runners[sig_name] = self._make_runner(spec, loaded.signatures[sig_name])
        if not self.signatures:
            raise ServingError(Code.INVALID_ARGUMENT, f"the SavedModel at {self.path} has no serving signatures")

    def _make_runner(self, spec: SignatureSpec, function: Any):
        from ingot.serving.host_tensors import to_tensor

        output_names = list(spec.outputs)
        on_runtime = self._on_runtime

        def call(inputs: Arrays) -> Arrays:
            started = time.perf_counter()
            try:
                tensors = {k: to_tensor(v) for k, v in inputs.items()}
                result = function(**tensors)
                outputs = {k: result[k].numpy() for k in output_names}
            except Exception as err:
                raise serving_error_from(err) from None
            if on_runtime is not None:
                on_runtime(time.perf_counter() - started)
            return outputs

        if self.batching is not None and spec.batched:
            on_batch = None
            if self._on_batch is not None:
                on_batch = lambda n, padded, secs, _s=spec.name: self._on_batch(_s, n, padded, secs)  # noqa: E731
            return BatchedRunner(call, self.batching, name=f"{self.name}-v{self.version}-{spec.name}", on_batch=on_batch)
        return DirectRunner(call, self._direct_pool)

    # -- serving

    def signature(self, name: str, *, rest: bool = False) -> SignatureSpec:
        """Signature by name ("" = serving_default), with TF Serving's error for each API."""
        return find_signature(self.signatures, name, rest=rest)

    def submit(self, signature_name: str, inputs: Arrays) -> Future:
        """Queue a validated request; the future yields every output of the signature."""
        spec = self.signature(signature_name)
        check_input_names(spec, inputs)
        size = batch_size_of(inputs) if spec.batched else 1
        runner = self._runners.get(spec.name)
        if runner is None or self.unloaded:
            raise ServableUnloaded(self.name, self.version)
        if self.first_request_at is None:
            self.first_request_at = time.monotonic()
        try:
            return runner.submit(inputs, size)
        except ServingError as err:
            if self.unloaded and err.code == Code.UNAVAILABLE:
                raise ServableUnloaded(self.name, self.version) from None
            raise

    # -- warm-up

    def _run_now(self, signature_name: str, inputs: Arrays) -> Arrays:
        spec = self.signature(signature_name)
        check_input_names(spec, inputs)
        size = batch_size_of(inputs) if spec.batched else 1
        return self._runners[spec.name].run_now(inputs, size)

    def warm_up(self, *, iterations: int = 1, threads: int = 1) -> WarmupStats:
        """Replay assets.extra/tf_serving_warmup_requests, then run every allowed batch size not
        yet covered, each through the serving path. Any failure fails the load, as in TF Serving.

        Each signature's records replay in order on one thread, the signatures on up to `threads`
        at once (TF Serving's num_model_warmup_threads): a signature's first call is mostly graph
        optimisation on one core, so two of them overlap well. Padded batch sizes are warmed for
        the answering signatures only; `serving_embedding` feeds the drift monitor, off the
        request path, so one replay proves it loads."""
        started = time.perf_counter()
        records = [r for r in read_warmup_requests(storage.join(self.path, repository.WARMUP_PATH))
                   if self.replays(r.model_spec.signature_name)]
        stats = self.warmup
        stats.records = len(records)
        by_signature: dict[str, list[Any]] = {}
        for request in records:
            by_signature.setdefault(self.signature(request.model_spec.signature_name or DEFAULT_SIGNATURE).name,
                                    []).append(request)
        jobs = [(sig, requests, max(1, iterations)) for sig, requests in by_signature.items()]
        if len(jobs) > 1 and threads > 1:
            with ThreadPoolExecutor(max_workers=min(threads, len(jobs)), thread_name_prefix="warmup") as pool:
                done = [future.result() for future in [pool.submit(self._warm_signature, *job) for job in jobs]]
        else:
            done = [self._warm_signature(*job) for job in jobs]
        for replayed, extra in done:
            stats.requests_replayed += replayed
            stats.extra_batch_sizes.extend(extra)
        stats.batch_sizes_run = {sig: sorted(r.executed_sizes) for sig, r in self._runners.items()}
        stats.seconds = time.perf_counter() - started
        return stats

    def _warm_signature(self, sig: str, requests: list[Any], iterations: int) -> tuple[int, list[int]]:
        """(records replayed, padded batch sizes added) for one signature."""
        spec = self.signature(sig)
        replayed, sample = 0, None
        for _ in range(iterations):
            for request in requests:
                inputs = {
                    k: array_from_proto(k, v, spec.inputs.get(k), max_elements=self.max_elements)
                    for k, v in request.inputs.items()
                }
                self._run_now(sig, inputs)
                replayed += 1
                if sample is None:
                    sample = inputs
        extra: list[int] = []
        runner = self._runners.get(spec.name)
        if (sample is None or sig in OFF_REQUEST_PATH or not isinstance(runner, BatchedRunner)
                or self.batching is None or not self.batching.allowed_batch_sizes):
            return replayed, extra
        for size in self.batching.allowed_batch_sizes:
            if size in runner.executed_sizes:
                continue
            runner.run_now({k: np.repeat(v[:1], size, axis=0) for k, v in sample.items()}, size)
            extra.append(size)
            replayed += 1
        return replayed, extra

    def replays(self, signature_name: str) -> bool:
        """Whether warm-up replays records of this signature (all: a missing one fails the load)."""
        return True

    def unload(self) -> None:
        """Run what is queued and stop the runners. The model itself is freed with this object
        (the manager decides when: destroying a SavedModel's objects takes a while)."""
        self.unloaded = True
        for runner in list(self._runners.values()):
            runner.stop()
        self._runners.clear()


def batch_size_of(inputs: Arrays) -> int:
    sizes = {int(v.shape[0]) if v.ndim else -1 for v in inputs.values()}
    if len(sizes) != 1 or -1 in sizes:
        raise invalid_argument(
            "all inputs must have the same size in their first (batch) dimension; got "
            + ", ".join(f"{k}: {list(v.shape)}" for k, v in sorted(inputs.items()))
        )
    size = sizes.pop()
    if size < 1:
        raise invalid_argument("the batch dimension of the inputs is 0; send at least one item")
    return size


def read_warmup_requests(path: str) -> list[Any]:
    """PredictRequests from a TF Serving warm-up file (PredictionLog TFRecords); none when absent."""
    if not storage.exists(path):
        return []
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    try:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            if len(requests) >= MAX_WARMUP_RECORDS:
                raise invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
                )
            entry = prediction_log_pb2.PredictionLog()
            entry.ParseFromString(raw)
            if entry.WhichOneof("log_type") != "predict_log":
                log.warning("skipping a %s warm-up record in %s: only predict_log is replayed",
                            entry.WhichOneof("log_type"), path)
                continue
            requests.append(entry.predict_log.request)
    except ServingError:
        raise
    except Exception as err:
        raise ServingError(Code.DATA_LOSS, f"cannot read warm-up records {path}: {clean_tf_message(str(err))}") from None
    return requests
