"""REST predict bodies decoded off the event loop, in worker processes.

Decompressing and parsing a large body is CPU work that holds the GIL for long stretches
(json.loads of six million numbers is one C call of seconds), so a thread would still stall the
event loop that /healthz and gRPC share. Small plain bodies are parsed inline (microseconds);
anything larger, and every compressed body, goes to a small pool of worker processes that
decompresses with a hard cap, checks the encoding, parses, validates against the signature and
measures encoded images, then sends back the numpy inputs (or the ServingError).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial

from ingot.protocol.images import check_encoded_images
from ingot.protocol.rest.encoding import decode_content
from ingot.protocol.rest.request import JsonLimits, PredictRequest, parse_predict_request
from ingot.protocol.status import unavailable
from ingot.protocol.tensors import SignatureSpec, find_signature

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BodyLimits:
    json: JsonLimits
    max_body_bytes: int  # after decompression too
    max_image_pixels: int | None


def decode_predict_body(body: bytes, content_encoding: str, signatures: Mapping[str, SignatureSpec],
                        limits: BodyLimits) -> tuple[PredictRequest, bytes]:
    """Everything CPU-heavy about a REST predict body, in one call (inline or in a worker):
    → (validated inputs, the JSON body after decompression)."""
    if content_encoding:
        body = decode_content(body, content_encoding, limits.max_body_bytes)
    parsed = parse_predict_request(body, partial(find_signature, signatures, rest=True), limits.json)
    check_encoded_images(parsed.inputs, limits.max_image_pixels)
    return parsed, body


def _decode_in_worker(body: bytes, content_encoding: str, signatures: Mapping[str, SignatureSpec],
                      limits: BodyLimits) -> tuple[PredictRequest, bytes | None]:
    """decode_predict_body in a worker; the body comes back only when decompressing changed it
    (the caller still holds the bytes it sent: no second trip through the pipe)."""
    parsed, inflated = decode_predict_body(body, content_encoding, signatures, limits)
    return parsed, inflated if content_encoding else None


def _ready() -> int:
    return os.getpid()


class ParsePool:
    """Worker processes for `decode_predict_body`, started at server start (so the first large
    request does not pay for the start-up) and replaced if one dies."""

    MAX_CONSECUTIVE_FAILURES = 3

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._failures = 0  # broken pools in a row; past the maximum, parse in threads instead

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # spawn: never fork a process that runs TensorFlow and gRPC threads.
                self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            return self._executor

    def start(self) -> list[Future]:
        pool = self._pool()
        return [pool.submit(_ready) for _ in range(self.workers)]

    async def decode(self, body: bytes, content_encoding: str, signatures: Mapping[str, SignatureSpec],
                     limits: BodyLimits) -> tuple[PredictRequest, bytes]:
        if self._failures >= self.MAX_CONSECUTIVE_FAILURES:
            # Workers cannot run here (e.g. an embedding whose main module cannot be re-imported):
            # still off the event loop, though a thread shares the GIL.
            return await asyncio.to_thread(decode_predict_body, body, content_encoding, signatures, limits)
        pool = self._pool()
        try:
            parsed, inflated = await asyncio.wrap_future(
                pool.submit(_decode_in_worker, body, content_encoding, dict(signatures), limits)
            )
        except BrokenProcessPool:
            with self._lock:
                self._failures += 1
                if self._executor is pool:
                    self._executor = None
            pool.shutdown(wait=False, cancel_futures=True)
            if self._failures >= self.MAX_CONSECUTIVE_FAILURES:
                log.error("request-parsing worker processes keep failing; parsing in threads from now on")
            else:
                log.error("a request-parsing worker died (out of memory?); starting new workers")
            raise unavailable("the server could not parse this request (a parsing worker failed); retry") from None
        self._failures = 0
        return parsed, inflated if inflated is not None else body

    def stop(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
