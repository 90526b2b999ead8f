"""The gateway's capture writer: stores sampled inputs off the request path.

`offer()` runs on the request path and only decides and enqueues (a random draw, a set lookup,
a queue put that never blocks). One background thread encodes (PNG for uint8 tensors) and writes
each input once under its content address, and sweeps retention. The queue is bounded in items
and in bytes: when either is full, or the store fails, the input is dropped and counted; a
request never waits for, or fails because of, the capture store.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingot.capture import layout
from ingot.capture.policy import CapturePolicy
from ingot.capture.retention import sweep

log = logging.getLogger(__name__)

DEFAULT_QUEUE_ITEMS = 10_000
DEFAULT_QUEUE_BYTES = 64 << 20
DEFAULT_SWEEP_INTERVAL_S = 300.0
_RECENT = 100_000  # hashes remembered as stored, so a repeated input costs no store call


@dataclass
class CaptureStats:
    offered: int = 0
    written: int = 0
    deduplicated: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"queue_full": 0, "store_error": 0})
    bytes_written: int = 0
    removed: int = 0
    queued_bytes: int = 0


@dataclass(frozen=True, slots=True)
class _Item:
    model: str
    sha256: str
    payload: Any  # uint8 image or encoded bytes
    extension: str
    size: int


class CaptureWriter:
    def __init__(self, base: str, *, max_queue: int = DEFAULT_QUEUE_ITEMS, max_queue_bytes: int = DEFAULT_QUEUE_BYTES,
                 sweep_interval_s: float = DEFAULT_SWEEP_INTERVAL_S, rng: random.Random | None = None) -> None:
        self.base = base
        self.max_queue_bytes = max_queue_bytes
        self.sweep_interval_s = sweep_interval_s
        self.stats = CaptureStats()
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._rng = rng or random.Random()
        self._policies: dict[str, CapturePolicy] = {}
        self._last_sweep = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="ingot-capture", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ request path

    def sampled(self, policy: CapturePolicy) -> bool:
        """One draw per row: True for `policy.sample` of them."""
        return policy.sample >= 1.0 or (policy.sample > 0 and self._rng.random() < policy.sample)

    def offer(self, model: str, policy: CapturePolicy, sha256: str, payload: Any, extension: str) -> bool:
        """Queue one input for storing; True when it is (or already was) in the store or queued."""
        self._policies[model] = policy
        with self._lock:
            self.stats.offered += 1
            if sha256 in self._recent:
                self._recent.move_to_end(sha256)
                self.stats.deduplicated += 1
                return True
            size = int(payload.nbytes) if isinstance(payload, np.ndarray) else len(payload)
            if self.stats.queued_bytes + size > self.max_queue_bytes:
                self.stats.dropped["queue_full"] += 1
                return False
            try:
                self._queue.put_nowait(_Item(model, sha256, payload, extension, size))
            except queue.Full:
                self.stats.dropped["queue_full"] += 1
                return False
            self.stats.queued_bytes += size
            self._remember(sha256)
            return True

    def _remember(self, sha256: str) -> None:
        self._recent[sha256] = None
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    # ------------------------------------------------------------ background

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=min(self.sweep_interval_s, 1.0))
            except queue.Empty:
                item = None
                self._maybe_sweep()
                continue
            if item is None:
                self._queue.task_done()
                return
            try:
                self._store(item)
            finally:
                with self._lock:
                    self.stats.queued_bytes -= item.size
                self._queue.task_done()
            self._maybe_sweep()

    def _store(self, item: _Item) -> None:
        try:
            data = layout.encode_png(item.payload) if isinstance(item.payload, np.ndarray) else item.payload
            from ingot import storage

            wrote = storage.write_once(layout.location(self.base, item.model, item.sha256, item.extension), data)
        except Exception as err:  # noqa: BLE001 - a store failure drops the input, never the gateway
            with self._lock:
                self.stats.dropped["store_error"] += 1
                self._recent.pop(item.sha256, None)  # not stored: a later sighting may try again
            log.warning("capture store %s: dropping input %s: %s", self.base, item.sha256[:12], err)
            return
        with self._lock:
            if wrote:
                self.stats.written += 1
                self.stats.bytes_written += len(data)
            else:
                self.stats.deduplicated += 1

    def _maybe_sweep(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_sweep < self.sweep_interval_s:
            return
        self._last_sweep = now
        for model, policy in list(self._policies.items()):
            try:
                removed = sweep(self.base, model, max_bytes=policy.max_bytes, retention_days=policy.retention_days)
            except Exception as err:  # noqa: BLE001 - retained longer, retried at the next sweep
                log.warning("capture retention sweep of %s/%s failed: %s", self.base, model, err)
                continue
            with self._lock:
                self.stats.removed += len(removed)
                for name in removed:
                    self._recent.pop(name.rsplit("/", 1)[-1].split(".", 1)[0], None)

    def sweep_now(self) -> None:
        """Run retention now (tests, shutdown)."""
        self._maybe_sweep(force=True)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued is stored or dropped; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        self.flush(timeout_s)
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def readings(self) -> Iterable[tuple[str, str, str, float, dict[str, str]]]:
        """(name, kind, help, value, labels) for the gateway's metrics endpoint."""
        with self._lock:
            s = self.stats
            yield "ingot_gateway_capture_written", "counter", "Inputs written to the capture store.", s.written, {}
            yield ("ingot_gateway_capture_deduplicated", "counter",
                   "Inputs not written because the store already held them (same sha256).", s.deduplicated, {})
            for reason, count in s.dropped.items():
                yield ("ingot_gateway_capture_dropped", "counter",
                       "Inputs dropped (queue full or store down).", count, {"reason": reason})
            yield "ingot_gateway_capture_bytes_written", "counter", "Bytes written to the capture store.", \
                s.bytes_written, {}
            yield "ingot_gateway_capture_removed", "counter", "Inputs removed by retention.", s.removed, {}
            yield "ingot_gateway_capture_queue_bytes", "gauge", "Bytes of inputs waiting to be written.", \
                s.queued_bytes, {}
