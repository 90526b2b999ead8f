"""Writing the log off the request path: a bounded queue drained by one background thread.

`submit()` never blocks and never raises: when the queue is full the records are dropped and
counted. The thread writes batches; when the writer fails with a connection error (database
down) it keeps the batch, backs off and retries, so logging resumes by itself when the database
is back, while new records beyond the queue's bound are dropped and counted. A batch the
database rejects for its content is dropped (counted) rather than retried forever. Warnings are
rate-limited to one line per interval with the drop count since the last one. `close()` flushes
what is queued, within a deadline.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from ingot.inference_log.records import LogRecord

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 20_000
DEFAULT_BATCH_SIZE = 500


class Writer(Protocol):
    def write(self, records: Sequence[LogRecord]) -> int: ...


class SinkStats:
    """Counters the metrics endpoint reads (plain ints: written only by their owning thread)."""

    __slots__ = ("dropped_queue_full", "dropped_rejected", "write_errors", "written")

    def __init__(self) -> None:
        self.written = 0
        self.dropped_queue_full = 0
        self.dropped_rejected = 0
        self.write_errors = 0

    @property
    def dropped(self) -> int:
        return self.dropped_queue_full + self.dropped_rejected


class QueueSink:
    """A bounded, non-blocking front for a Writer; one background thread does the writing."""

    def __init__(
        self,
        writer: Writer,
        *,
        name: str = "inference-log",
        max_queue: int = DEFAULT_QUEUE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        warn_every_s: float = 30.0,
        is_transient: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self._writer = writer
        self._name = name
        self._queue: queue.Queue[LogRecord] = queue.Queue(maxsize=max_queue)
        self.max_queue = max_queue
        self._batch_size = batch_size
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._warn_every_s = warn_every_s
        self._is_transient = is_transient or _is_connection_error
        self.stats = SinkStats()
        self._last_warning = float("-inf")
        self._dropped_at_last_warning = 0
        self._closing = threading.Event()
        self._flush_deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name=f"{name}-writer", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, records: Sequence[LogRecord]) -> None:
        """Queue records for writing; drop (and count) what does not fit. Never blocks."""
        if self._closing.is_set():
            self.stats.dropped_queue_full += len(records)
            return
        for index, record in enumerate(records):
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                self.stats.dropped_queue_full += len(records) - index
                self._warn("queue full")
                return

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop accepting records, write what is queued (giving up after `timeout_s`), stop."""
        self._flush_deadline = time.monotonic() + timeout_s
        self._closing.set()
        self._thread.join(timeout_s + 1.0)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch:
                self._write(batch)
            elif self._closing.is_set():
                return

    def _next_batch(self) -> list[LogRecord]:
        try:
            first = self._queue.get(timeout=0.05)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[LogRecord]) -> None:
        delay = self._retry_initial_s
        while True:
            try:
                self._writer.write(batch)
            except Exception as err:  # noqa: BLE001 - a sink failure must never escape to requests
                self.stats.write_errors += 1
                if not self._is_transient(err):
                    self.stats.dropped_rejected += len(batch)
                    self._warn(f"batch rejected: {_first_line(err)}")
                    return
                if self._closing.is_set() and time.monotonic() + delay > self._flush_deadline:
                    self.stats.dropped_rejected += len(batch) + self._drain()
                    self._warn(f"sink down at shutdown: {_first_line(err)}")
                    return
                self._warn(f"sink down, retrying in {delay:.1f}s: {_first_line(err)}")
                time.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            self.stats.written += len(batch)
            return

    def _drain(self) -> int:
        dropped = 0
        while True:
            try:
                self._queue.get_nowait()
                dropped += 1
            except queue.Empty:
                return dropped

    def _warn(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_warning < self._warn_every_s:
            return
        dropped = self.stats.dropped - self._dropped_at_last_warning
        self._last_warning, self._dropped_at_last_warning = now, self.stats.dropped
        log.warning("%s: %s (%d records dropped since the last warning, %d in all; %d queued of %d)",
                    self._name, reason, dropped, self.stats.dropped, self.queued, self.max_queue)


def _is_connection_error(err: BaseException | None) -> bool:
    """Database unreachable or connection lost (worth retrying), as opposed to bad content."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    while err is not None:
        if isinstance(err, (OperationalError, InterfaceError, OSError)):
            return True
        if isinstance(err, DBAPIError) and err.connection_invalidated:
            return True
        err = err.__cause__  # e.g. "cannot open the inference log" (ConfigError) from an OperationalError
    return False


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class JsonlWriter:
    """Appends records as JSON lines to a file (one line per row; the file is a log, not replaced)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the sink's lifetime

    def write(self, records: Sequence[LogRecord]) -> int:
        import orjson

        self._file.write(b"".join(orjson.dumps(record.as_json()) + b"\n" for record in records))
        self._file.flush()
        return len(records)

    def close(self) -> None:
        self._file.close()
