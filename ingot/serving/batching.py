"""Server-side dynamic batching with TF Serving's knobs (BatchingParameters).

`BatchScheduler` is TF Serving's basic batch scheduler in Python: tasks (requests, each a batch of
one or more items) join the open batch until it holds `max_batch_size` items; a batch runs when it
is full, when its oldest task has waited `batch_timeout_micros`, or at once when a batch thread is
free and the timeout is zero. At most `max_enqueued_batches` batches wait: a task that would need
another one is refused at once with UNAVAILABLE, so memory stays bounded under overload.

`BatchProcessor` turns a batch into one model call: concatenate, pad up to the next
`allowed_batch_sizes` entry by repeating the first item, run, slice each task's rows back. When a
merged call fails on bad data (say one undecodable image), the tasks are re-run one by one so only
the offending request fails.

Model calls run on the scheduler's threads; TensorFlow releases the GIL while it computes.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, InvalidStateError

import numpy as np

from ingot.protocol.status import Code, ServingError, invalid_argument, unavailable
from ingot.serving.config import BatchingOptions
from ingot.serving.host_tensors import aligned_empty

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"


class Task:
    """One request's share of a batch."""

    __slots__ = ("inputs", "size", "future", "enqueued_at", "key")

    def __init__(self, inputs: Arrays, size: int, key: tuple) -> None:
        self.inputs = inputs
        self.size = size
        self.future: Future = Future()
        self.enqueued_at = time.monotonic()
        self.key = key


class _Batch:
    __slots__ = ("tasks", "size", "key", "opened_at")

    def __init__(self, key: tuple) -> None:
        self.tasks: list[Task] = []
        self.size = 0
        self.key = key
        self.opened_at = time.monotonic()


def shape_key(inputs: Mapping[str, np.ndarray]) -> tuple:
    """Tasks merge only when every input agrees on dtype and the dimensions after the first."""
    return tuple((name, arr.dtype.str, arr.shape[1:]) for name, arr in sorted(inputs.items()))


class BatchScheduler:
    def __init__(
        self,
        options: BatchingOptions,
        process_batch: Callable[[list[Task]], None],
        *,
        name: str = "batch",
    ) -> None:
        self.options = options
        self._process_batch = process_batch
        self._cond = threading.Condition()
        self._batches: collections.deque[_Batch] = collections.deque()
        self._open: _Batch | None = None
        self._stopping = False
        self._timeout_s = options.batch_timeout_micros / 1e6
        self._max_exec = options.execution_batch_size
        self._threads = [
            threading.Thread(target=self._worker, name=f"{name}-{i}", daemon=True)
            for i in range(int(options.num_batch_threads))
        ]
        for thread in self._threads:
            thread.start()

    # -- submitting

    def schedule(self, inputs: Arrays, size: int) -> Future:
        """Queue one request; its future resolves to that request's outputs."""
        if size < 1:
            raise invalid_argument("a request must hold at least one item to be batched")
        opts = self.options
        if size > opts.max_batch_size:
            raise invalid_argument(
                f"Task size {size} is larger than maximum input batch size {opts.max_batch_size}"
            )
        key = shape_key(inputs)
        if size <= self._max_exec:
            task = Task(inputs, size, key)
            with self._cond:
                self._enqueue_locked([task])
            return task.future
        # Large batch splitting: pieces of at most max_execution_batch_size, reassembled in order.
        pieces = []
        for start in range(0, size, self._max_exec):
            stop = min(start + self._max_exec, size)
            pieces.append(Task({k: v[start:stop] for k, v in inputs.items()}, stop - start, key))
        with self._cond:
            self._enqueue_locked(pieces)
        return _combine([p.future for p in pieces])

    def _enqueue_locked(self, tasks: list[Task]) -> None:
        if self._stopping:
            raise unavailable("the server is shutting down and takes no new requests")
        # Count the batches these tasks would need before admitting any of them.
        open_batch = self._open
        open_room = self._max_exec - open_batch.size if open_batch is not None else 0
        open_key = open_batch.key if open_batch is not None else None
        new_batches = 0
        for task in tasks:
            if open_key == task.key and task.size <= open_room:
                open_room -= task.size
            else:
                new_batches += 1
                open_key, open_room = task.key, self._max_exec - task.size
        if len(self._batches) + new_batches > self.options.max_enqueued_batches:
            raise unavailable(QUEUE_FULL_MESSAGE)
        for task in tasks:
            batch = self._open
            if batch is None or batch.key != task.key or batch.size + task.size > self._max_exec:
                batch = _Batch(task.key)
                self._batches.append(batch)
                self._open = batch
            batch.tasks.append(task)
            batch.size += task.size
            if batch.size >= self._max_exec:
                self._open = None
        self._cond.notify()

    # -- processing

    def _ready_locked(self, batch: _Batch, now: float) -> float:
        """0 when the batch should run now, else seconds to wait."""
        if self._stopping or batch is not self._open or batch.size >= self._max_exec:
            return 0.0
        waited = now - batch.tasks[0].enqueued_at
        return max(0.0, self._timeout_s - waited)

    def _worker(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._batches:
                        wait = self._ready_locked(self._batches[0], time.monotonic())
                        if wait <= 0:
                            batch = self._batches.popleft()
                            if batch is self._open:
                                self._open = None
                            break
                        self._cond.wait(wait)
                    elif self._stopping:
                        self._cond.notify_all()
                        return
                    else:
                        self._cond.wait()
                if self._batches:
                    self._cond.notify()  # another free thread may take the next batch
            try:
                self._process_batch(batch.tasks)
            except BaseException as err:  # never lose a task: fail what is left
                log.exception("batch processing failed")
                fail_tasks(batch.tasks, err)

    # -- introspection and shutdown

    @property
    def queued_tasks(self) -> int:
        with self._cond:
            return sum(len(b.tasks) for b in self._batches)

    @property
    def queued_batches(self) -> int:
        with self._cond:
            return len(self._batches)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Refuse new tasks, run every queued one, then end the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        with self._cond:  # whatever did not run in time fails instead of hanging its caller
            leftovers = [t for b in self._batches for t in b.tasks]
            self._batches.clear()
            self._open = None
        fail_tasks(leftovers, unavailable("the server shut down before this request ran"))


def _combine(futures: list[Future]) -> Future:
    """One future for the concatenated outputs of the pieces of a split task."""
    combined: Future = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def done(_: Future) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        if not combined.set_running_or_notify_cancel():
            return
        errors = [f.exception() for f in futures if f.cancelled() is False and f.exception() is not None]
        if errors:
            combined.set_exception(errors[0])
            return
        if any(f.cancelled() for f in futures):
            combined.set_exception(unavailable("part of a split request was cancelled"))
            return
        results = [f.result() for f in futures]
        combined.set_result({k: np.concatenate([r[k] for r in results]) for k in results[0]})

    for future in futures:
        future.add_done_callback(done)
    return combined


def fail_tasks(tasks: list[Task], err: BaseException) -> None:
    for task in tasks:
        future = task.future
        if future.done():
            continue
        if not future.running() and not future.set_running_or_notify_cancel():
            continue  # cancelled by its caller (timed out)
        try:
            future.set_exception(err)
        except InvalidStateError:  # resolved by a racing path
            pass


def merge_inputs(tasks: list[Task], padded_size: int) -> Arrays:
    """Concatenate the tasks' inputs and pad with copies of the first item up to padded_size,
    straight into one aligned array TensorFlow can use in place (ingot.serving.host_tensors)."""
    merged: Arrays = {}
    total = sum(t.size for t in tasks)
    for name in tasks[0].inputs:
        parts = [t.inputs[name] for t in tasks]
        if len(parts) == 1 and padded_size == total:
            merged[name] = parts[0]
            continue
        first = parts[0]
        if first.dtype.kind in "OSU":  # strings: numpy's own concatenation
            if padded_size > total:
                parts.append(np.repeat(first[:1], padded_size - total, axis=0))
            merged[name] = np.concatenate(parts, axis=0)
            continue
        out = aligned_empty((padded_size, *first.shape[1:]), first.dtype)
        offset = 0
        for part in parts:
            out[offset:offset + len(part)] = part
            offset += len(part)
        out[offset:] = first[:1]
        merged[name] = out
    return merged


def split_outputs(outputs: Arrays, sizes: list[int], padded_size: int) -> list[Arrays]:
    for name, arr in outputs.items():
        if np.ndim(arr) == 0 or arr.shape[0] != padded_size:
            raise ServingError(
                Code.FAILED_PRECONDITION,
                f"Batched output tensor '{name}' has shape {list(np.shape(arr))}; its 0th dimension "
                f"does not equal the sum of the 0th dimension sizes of the input tensors ({padded_size})",
            )
    results = []
    offset = 0
    for size in sizes:
        results.append({name: arr[offset:offset + size] for name, arr in outputs.items()})
        offset += size
    return results


class BatchProcessor:
    """Runs one batch of tasks through `call` (merged inputs → outputs)."""

    def __init__(
        self,
        call: Callable[[Arrays], Arrays],
        options: BatchingOptions,
        *,
        is_data_error: Callable[[BaseException], bool] = lambda err: False,
        on_batch: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self._call = call
        self._options = options
        self._is_data_error = is_data_error
        self._on_batch = on_batch
        self.executed_sizes: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, tasks: list[Task]) -> None:
        live = [t for t in tasks if t.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            self._run(live)
        except BaseException as err:
            if len(live) > 1 and self._is_data_error(err):
                for task in live:  # isolate the offending request(s)
                    try:
                        self._run([task])
                    except BaseException as single_err:
                        task.future.set_exception(single_err)
            else:
                for task in live:
                    if not task.future.done():
                        task.future.set_exception(err)

    def _run(self, live: list[Task]) -> None:
        sizes = [t.size for t in live]
        total = sum(sizes)
        padded = self._options.padded_size(total)
        inputs = merge_inputs(live, padded)
        started = time.monotonic()
        outputs = self._call(inputs)
        if self._on_batch is not None:
            self._on_batch(total, padded, time.monotonic() - started)
        with self._lock:
            self.executed_sizes.add(padded)
        for task, result in zip(live, split_outputs(outputs, sizes, padded)):
            task.future.set_result(result)
