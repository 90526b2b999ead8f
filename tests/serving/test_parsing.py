"""Large REST bodies parsed in worker processes: the same results and errors as inline (errors
cross the process boundary with their HTTP status), and a pool that keeps breaking falls back to
threads instead of failing every large request."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from ingot.protocol.rest.request import JsonLimits
from ingot.protocol.status import Code, ServingError
from ingot.protocol.tensors import DT_UINT8, SignatureSpec, TensorSpec
from ingot.serving.parsing import BodyLimits, ParsePool, decode_predict_body

SIGNATURES = {"serving_default": SignatureSpec("serving_default", {"images": TensorSpec(DT_UINT8, (None, 8, 8, 3))}, {})}
LIMITS = BodyLimits(JsonLimits(), 1 << 20, None)
IMAGES = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
BODY = json.dumps({"instances": [{"images": image.tolist()} for image in IMAGES]}).encode()


@pytest.fixture(scope="module")
def pool():
    pool = ParsePool(1)
    for ready in pool.start():
        ready.result(timeout=60)
    yield pool
    pool.stop()


def test_a_worker_parses_compressed_bodies_like_inline(pool):
    inline, _ = decode_predict_body(BODY, "", SIGNATURES, LIMITS)
    parsed, body = asyncio.run(pool.decode(gzip.compress(BODY), "gzip", SIGNATURES, LIMITS))
    assert body == BODY and parsed.row_format
    np.testing.assert_array_equal(parsed.inputs["images"], inline.inputs["images"])
    np.testing.assert_array_equal(parsed.inputs["images"], IMAGES)


def test_errors_come_back_with_their_code_and_http_status(pool):
    with pytest.raises(ServingError) as info:
        asyncio.run(pool.decode(zlib.compress(b" " * (2 << 20)), "deflate", SIGNATURES, LIMITS))
    assert info.value.code == Code.RESOURCE_EXHAUSTED and info.value.http_status == 413
    with pytest.raises(ServingError, match="rank 1 .* expects rank 4") as info:
        asyncio.run(pool.decode(b'{"instances": [1.5]}', "", SIGNATURES, LIMITS))
    assert info.value.http_status == 400


class _Broken:
    def submit(self, *args, **kwargs):
        future: Future = Future()
        future.set_exception(BrokenProcessPool("worker died"))
        return future

    def shutdown(self, **kwargs):
        pass


def test_a_pool_that_keeps_breaking_falls_back_to_threads(monkeypatch):
    pool = ParsePool(1)
    monkeypatch.setattr(pool, "_pool", lambda: _Broken())
    for _ in range(ParsePool.MAX_CONSECUTIVE_FAILURES):
        with pytest.raises(ServingError) as info:
            asyncio.run(pool.decode(BODY, "", SIGNATURES, LIMITS))
        assert info.value.code == Code.UNAVAILABLE
    parsed, _ = asyncio.run(pool.decode(BODY, "", SIGNATURES, LIMITS))
    np.testing.assert_array_equal(parsed.inputs["images"], IMAGES)
