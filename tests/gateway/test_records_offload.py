"""Large inputs' per-row hashes and pixel statistics are computed off the event loop (issue 16):
at the largest batch the limits allow they took 0.8 s of it. The rows come out the same, from
the recorder's worker thread, and `drain()` waits for them before the sinks close."""

from __future__ import annotations

import hashlib
import threading

import numpy as np

from ingot.gateway.classes import ClassCatalog
from ingot.gateway.metrics import GatewayMetrics
from ingot.gateway.records import INLINE_FACTS_BYTES, RequestRecorder, RequestState
from ingot.gateway.routing import validate


class ListSink:
    def __init__(self) -> None:
        self.batches: list[tuple[str, list]] = []

    def submit(self, records) -> None:
        self.batches.append((threading.current_thread().name, list(records)))


def record(recorder: RequestRecorder, images: np.ndarray, request_id: str) -> None:
    table = validate({"model": "m", "upstreams": {"champion": {"rest": "http://127.0.0.1:1", "grpc": "127.0.0.1:1", "version": 1}}})
    state = RequestState("GRPC", request_id=request_id)
    probabilities = np.full((len(images), 2), 0.5, np.float32)
    recorder.record(table, state, {"images": images}, {"probabilities": probabilities}, "OK",
                    variant="champion", how="weight", version=1, protocol="GRPC")


def test_large_inputs_are_logged_from_the_worker_thread_small_ones_inline() -> None:
    sink = ListSink()
    recorder = RequestRecorder(sink=sink, metrics=GatewayMetrics(), classes=ClassCatalog(None))
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    large = rng.integers(0, 256, (INLINE_FACTS_BYTES // (32 * 32 * 3) + 1, 32, 32, 3), dtype=np.uint8)
    record(recorder, small, "small")
    assert sink.batches[0][0] == threading.current_thread().name  # inline: already there
    record(recorder, large, "large")
    recorder.drain()
    (small_thread, small_rows), (large_thread, large_rows) = sorted(sink.batches, key=lambda b: b[1][0].request_id, reverse=True)
    assert small_thread == threading.current_thread().name
    assert large_thread.startswith("gateway-facts")
    assert [r.row for r in large_rows] == list(range(len(large)))
    assert [r.input_sha256 for r in large_rows] == [hashlib.sha256(image.tobytes()).hexdigest() for image in large]
    assert large_rows[3].input_mean == float(large[3].astype(np.float64).mean())
    assert all(r.request_id == "large" and r.variant == "champion" and r.confidence == 0.5 for r in large_rows)
    record(recorder, large, "after-drain")  # a new worker after a drain: nothing is lost
    recorder.drain()
    assert len(sink.batches[-1][1]) == len(large)
