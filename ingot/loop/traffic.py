"""Live traffic for the loop: many simulated callers sending images through the gateway's REST API,
and ground truth coming back later for a share of the rows.

The traffic is honest: the gateway and the controller learn a row's true class only from the
feedback call, which the driver makes `label_delay_s` after the answer, for `label_share` of the
rows, exactly as a labelling team would.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingot.errors import IngotError
from ingot.loop.shifts import Drift, PhotoShift, drifted, photo_like
from ingot.protocol import headers as wire
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.rest.client import dumps_request
from ingot.protocol.routes import FEEDBACK_PATH
from ingot.protocol.signatures import IMAGES_INPUT, SERVING_DEFAULT


class TrafficError(IngotError):
    """The traffic driver stopped with an error; the message says which."""


@dataclass
class TrafficStats:
    requests: int = 0
    rows: int = 0
    failed: int = 0                 # requests that did not get a 200
    labelled: int = 0               # rows whose label the gateway accepted
    feedback_failed: int = 0        # labels refused for good (never retried into success)
    drifted_rows: int = 0
    by_variant: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    # Live accuracy as the callers saw it, per phase of the loop (the phase when the request was
    # sent) and per drifted/undrifted row: answers compared with the images' true classes.
    answered: Counter = field(default_factory=Counter)
    correct: Counter = field(default_factory=Counter)

    def accuracy(self, phase: str, drifted: bool | None = None) -> tuple[float | None, int]:
        """(accuracy, rows) of a phase; `drifted` True/False: only the drifted/undrifted rows."""
        keys = [(phase, d) for d in ((True, False) if drifted is None else (drifted,))]
        rows = sum(self.answered[k] for k in keys)
        return (sum(self.correct[k] for k in keys) / rows if rows else None), rows

    def line(self) -> str:
        arms = ", ".join(f"{name} {count}" for name, count in sorted(self.by_variant.items()))
        return (f"{self.requests} requests ({self.rows} rows: {arms or 'none yet'}), {self.failed} failed, "
                f"{self.labelled} labelled")


@dataclass(order=True)
class _PendingLabel:
    due: float
    request_id: str = field(compare=False)
    row: int = field(compare=False)
    label: str = field(compare=False)
    feedback_key: str = field(default="", compare=False)
    attempts: int = field(default=0, compare=False)


class TrafficDriver:
    """Sends batches of changed test images as `callers` distinct callers (sticky by caller key)."""

    def __init__(
        self,
        gateway_rest: str,
        model: str,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: list[str],
        *,
        callers: int = 200,
        batch: int = 8,
        label_share: float = 0.5,
        label_delay_s: tuple[float, float] = (1.0, 3.0),
        shift: PhotoShift = PhotoShift(),
        caller_header: str = wire.CALLER,
        seed: int = 0,
        feedback_token: str | None = None,
    ) -> None:
        if len(images) == 0:
            raise ValueError("no images to send")
        self.url = gateway_rest.rstrip("/") + ModelSpec(model).path(":predict")
        self.feedback_url = gateway_rest.rstrip("/") + FEEDBACK_PATH
        self.images, self.labels, self.class_names = images, labels, class_names
        self.callers, self.batch = callers, batch
        self.label_share, self.label_delay_s = label_share, label_delay_s
        self.shift, self.caller_header = shift, caller_header
        self.feedback_token = feedback_token  # the labeller's; without it each label carries its answer's key
        self.rng = np.random.default_rng(seed)
        self.drift: Drift | None = None
        self.phase = "before drift"  # the loop names the stretch of traffic the answers count for
        self.stats = TrafficStats()
        self._labels: list[_PendingLabel] = []

    def start_drift(self, drift: Drift) -> None:
        self.drift = drift

    def _next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        picks = self.rng.integers(0, len(self.images), size=self.batch)
        images = photo_like(self.images[picks], self.rng, self.shift)
        mask = np.zeros(len(picks), bool)
        if self.drift is not None:
            images, mask = drifted(images, self.rng, self.drift)
        return images, self.labels[picks], mask

    async def run(self, *, stop: Callable[[], bool], max_requests: int, concurrency: int = 8,
                  progress: Callable[[TrafficStats], None] | None = None, progress_every_s: float = 5.0,
                  requests_per_s: float | Callable[[], float] | None = None) -> TrafficStats:
        """Send until `stop()` is true or `max_requests` were sent; then deliver the labels still due.
        `requests_per_s`: at most this rate, or the rate a callable gives at each request (traffic
        beside a training run leaves it CPU)."""
        import aiohttp

        started = time.perf_counter()
        sent = 0
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency + 2)) as http:
            stopping = asyncio.Event()

            next_slot = [time.perf_counter()]

            async def caller_loop(worker: int) -> None:
                nonlocal sent
                while not stopping.is_set() and sent < max_requests:
                    rate = requests_per_s() if callable(requests_per_s) else requests_per_s
                    if rate:
                        slot, next_slot[0] = next_slot[0], max(next_slot[0], time.perf_counter()) + 1 / rate
                        if slot > time.perf_counter():
                            await asyncio.sleep(slot - time.perf_counter())
                    sent += 1
                    await self._predict(http, f"caller-{int(self.rng.integers(0, self.callers)):04d}")

            async def watch() -> None:
                last = time.perf_counter()
                while not stopping.is_set():
                    await asyncio.sleep(0.25)
                    if await asyncio.to_thread(stop) or sent >= max_requests:
                        stopping.set()
                    if progress is not None and time.perf_counter() - last >= progress_every_s:
                        last = time.perf_counter()
                        progress(self.stats)

            labeller = asyncio.create_task(self._deliver_labels(http, stopping))
            await asyncio.gather(watch(), *(caller_loop(i) for i in range(concurrency)))
            await labeller
        self.stats.seconds += time.perf_counter() - started
        return self.stats

    async def _predict(self, http: Any, caller: str) -> None:
        images, labels, mask = self._next_batch()
        phase = self.phase
        body = dumps_request(SERVING_DEFAULT, {IMAGES_INPUT: images})
        self.stats.requests += 1
        self.stats.rows += len(images)
        self.stats.drifted_rows += int(mask.sum())
        try:
            async with http.post(self.url, data=body, headers={self.caller_header: caller,
                                                               "content-type": "application/json"}) as response:
                answer = await response.read()
                if response.status == 200:
                    self._score(phase, answer, labels, mask)
                if response.status != 200:
                    self.stats.failed += 1
                    self.stats.errors[str(response.status)] += 1
                    return
                request_id = response.headers.get(wire.REQUEST_ID, "")
                feedback_key = response.headers.get(wire.FEEDBACK_KEY, "")
                self.stats.by_variant[response.headers.get(wire.VARIANT, "?")] += len(images)
        except (TimeoutError, OSError) as err:
            self.stats.failed += 1
            self.stats.errors[type(err).__name__] += 1
            return
        now = time.monotonic()
        for row, label in enumerate(labels):
            if self.rng.random() < self.label_share:
                due = now + float(self.rng.uniform(*self.label_delay_s))
                heapq.heappush(self._labels, _PendingLabel(due, request_id, row, self.class_names[int(label)],
                                                           feedback_key))

    def _score(self, phase: str, answer: bytes, labels: np.ndarray, mask: np.ndarray) -> None:
        """Count the answer's right rows for the phase (the caller's view of live accuracy)."""
        import orjson

        from ingot.protocol.rest.client import predict_outputs
        from ingot.protocol.signatures import CLASS_IDS, PROBABILITIES

        try:
            outputs = predict_outputs(orjson.loads(answer), lambda: PROBABILITIES, {CLASS_IDS, PROBABILITIES})
        except ValueError:
            return
        if not outputs:
            return
        predicted = (np.asarray(outputs[CLASS_IDS]).reshape(-1) if CLASS_IDS in outputs
                     else np.asarray(outputs[PROBABILITIES]).argmax(axis=1))
        if predicted.shape[0] != labels.shape[0]:
            return
        right = predicted.astype(np.int64) == labels.astype(np.int64)
        for drifted_row in (True, False):
            rows = mask == drifted_row
            self.stats.answered[(phase, drifted_row)] += int(rows.sum())
            self.stats.correct[(phase, drifted_row)] += int((right & rows).sum())

    async def _deliver_labels(self, http: Any, stopping: asyncio.Event) -> None:
        """Send labels when due, many per call (the list form); a row not yet in the log (it is
        written a moment after the answer) is retried on its own a few times."""
        while True:
            if stopping.is_set() and not self._labels:
                return
            now = time.monotonic()
            due: list[_PendingLabel] = []
            while self._labels and (self._labels[0].due <= now or stopping.is_set()) and len(due) < 256:
                due.append(heapq.heappop(self._labels))
            if not due:
                await asyncio.sleep(0.05)
                continue
            if len(due) > 1 and await self._post_labels(http, due) == 200:
                self.stats.labelled += len(due)
                continue
            # The batch is all or nothing: find out row by row which ones are not there yet.
            await asyncio.gather(*(self._send_label(http, item) for item in due))

    async def _post_labels(self, http: Any, items: list[_PendingLabel]) -> int:
        payload: Any = [{"request_id": i.request_id, "row": i.row, "label": i.label,
                         **({"feedback_key": i.feedback_key} if i.feedback_key else {})} for i in items]
        if len(items) == 1:
            payload = payload[0]
        headers = {"Authorization": f"Bearer {self.feedback_token}"} if self.feedback_token else None
        try:
            async with http.post(self.feedback_url, json=payload, headers=headers) as response:
                await response.read()
                return int(response.status)
        except (TimeoutError, OSError):
            return 503

    async def _send_label(self, http: Any, item: _PendingLabel) -> None:
        status = await self._post_labels(http, [item])
        if status == 200:
            self.stats.labelled += 1
        elif status in (404, 503) and item.attempts < 5:
            item.attempts += 1
            item.due = time.monotonic() + 0.5 * item.attempts
            heapq.heappush(self._labels, item)
        else:
            self.stats.feedback_failed += 1


class BackgroundTraffic:
    """The traffic driver in a thread of its own, paced, until stopped (the drift stage's traffic
    flows while the monitor checks and the retraining runs, as production traffic would)."""

    def __init__(self, driver: Any, *, rate: float, concurrency: int) -> None:
        import threading

        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.rate = rate  # requests/s; may be changed while it runs

        def run() -> None:
            try:
                asyncio.run(driver.run(stop=self._stop.is_set, max_requests=10**9, concurrency=concurrency,
                                       requests_per_s=lambda: self.rate))
            except BaseException as err:  # noqa: BLE001 - reported by alive()/stop() in the loop's thread
                self.error = err

        self._thread = threading.Thread(target=run, name="drift-traffic", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.error is not None:
            raise TrafficError(f"the drift stage's traffic failed: {self.error}") from self.error
