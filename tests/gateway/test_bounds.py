"""Issue 16's bounds inside the gateway, without processes: the label cache keeps only positive
answers and at most MAX_CACHED_LABELS of them; mirrored copies in flight are bounded in bytes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np

from ingot.gateway import upstream as upstream_module
from ingot.gateway.metrics import GatewayMetrics
from ingot.gateway.mirror import Mirror, call_bytes
from ingot.gateway.routing import Upstream
from ingot.protocol.model_spec import ModelSpec
from ingot.serving.backend import PredictCall


def test_the_label_cache_keeps_only_positive_answers_and_is_bounded():
    async def scenario():
        client = upstream_module.UpstreamClient(Upstream("http://127.0.0.1:1", "127.0.0.1:1", 1), None)
        asked = []

        async def status(request, timeout_s, metadata=()):
            label = request.model_spec.version_label
            asked.append(label)
            versions = [SimpleNamespace(version=7)] if label.startswith("known") else []
            return SimpleNamespace(model_version_status=versions)

        client.grpc = lambda method, request, timeout_s, metadata=(): status(request, timeout_s)  # type: ignore[method-assign]
        for index in range(upstream_module.MAX_CACHED_LABELS + 50):
            assert await client.label_version("m", f"known-{index}") == 7
            assert await client.label_version("m", f"unknown-{index}") is None
        assert len(client._labels) == upstream_module.MAX_CACHED_LABELS
        assert all(label.startswith("known") for _, label in client._labels)
        asked.clear()
        last = f"known-{upstream_module.MAX_CACHED_LABELS + 49}"
        assert await client.label_version("m", last) == 7 and asked == []  # recent: from the cache
        assert await client.label_version("m", "known-0") == 7 and asked == ["known-0"]  # evicted: asked again
        await client.close()

    asyncio.run(scenario())


def test_mirrored_copies_are_bounded_in_bytes():
    metrics = GatewayMetrics()
    table = SimpleNamespace(model="m")
    image = np.zeros((4, 256, 256, 3), np.uint8)  # 768 KiB decoded
    call = PredictCall(ModelSpec("m"), "", {"images": image}, body=b"x" * (256 << 10))
    assert call_bytes(call) == image.nbytes + (256 << 10)

    async def scenario():
        mirror = Mirror(SimpleNamespace(), metrics, SimpleNamespace(), max_in_flight=32,
                        max_bytes_in_flight=3 * call_bytes(call))
        release = asyncio.Event()

        async def shadow(*_args):
            await release.wait()

        mirror._shadow = shadow  # type: ignore[method-assign]
        for _ in range(5):
            mirror.send(table, call, 1.0, "rest", "r")  # type: ignore[arg-type]
        assert len(mirror._tasks) == 3 and mirror.bytes_in_flight == 3 * call_bytes(call)
        release.set()
        await mirror.drain(5)
        await asyncio.sleep(0)
        assert mirror.bytes_in_flight == 0 and not mirror._tasks

    asyncio.run(scenario())
    assert metrics.mirrors.labels("m", "dropped")._value.get() == 2
