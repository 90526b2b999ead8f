"""The gateway's prediction cache end to end: real `ingot serve` upstreams, a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.conftest import flushed_rows, routes_document, write_routes
from tests.gateway.test_gateway_api import predict
from tests.serving.support import colour_images, grpc_stubs, predict_request, wait_for
from tests.support.redis import RedisServer, redis_server

pytestmark = pytest.mark.xdist_group("serving-conformance")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server(["--maxmemory-policy", "allkeys-lru"]) as server:
        yield server


@pytest.fixture
def upstream(conformance_server):  # type: ignore[no-untyped-def]
    return conformance_server


def cached_routes(upstream, **kw):  # type: ignore[no-untyped-def]
    doc = routes_document(upstream, **kw)
    doc["cache"] = {"ttl_s": 60}
    return doc


def test_rest_miss_then_hit_byte_for_byte_logged_and_promotion_changes_the_key(start_gateway, upstream, redis):
    gateway = start_gateway(cached_routes(upstream), cache_url=redis.url)
    images = colour_images([0, 1], seed=41)
    status, first, headers = predict(gateway, images)
    assert (status, headers["x-ingot-cache"]) == (200, "miss")

    def hit():  # the store is off the request path
        answer = predict(gateway, images)
        return answer if answer[2]["x-ingot-cache"] == "hit" else None

    status, again, hit_headers = wait_for(hit, timeout_s=10, what="a cache hit")
    assert (status, again) == (200, first)
    assert hit_headers["x-ingot-model-version"] == "2"
    rows = flushed_rows(gateway, hit_headers["x-ingot-request-id"], at_least=2)
    # a hit is still the arm's answer (accuracy evidence); counts.py keeps it out of latency
    assert {(bool(r["cache_hit"]), bool(r["evidence"]), r["degraded"]) for r in rows} == {(True, True, None)}
    from tests.gateway.test_gateway_degraded import path_count

    assert path_count(gateway, "cache") >= 1
    miss_rows = flushed_rows(gateway, headers["x-ingot-request-id"], at_least=2)
    assert {bool(r["cache_hit"]) for r in miss_rows} == {False}
    # another input is another key
    assert predict(gateway, colour_images([2], seed=3))[2]["x-ingot-cache"] == "miss"
    # promotion: version 1 is now served, so the same input misses
    write_routes(gateway.routes_path, {**cached_routes(upstream, champion=1, challenger=2)})
    wait_for(lambda: predict(gateway, images)[2]["x-ingot-model-version"] == "1" or None, timeout_s=10,
             what="the new champion")
    _, _, promoted = predict(gateway, colour_images([2, 2], seed=77))
    assert promoted["x-ingot-cache"] == "miss"


def test_a_model_without_cache_config_is_not_cached(start_gateway, upstream, redis):
    gateway = start_gateway(routes_document(upstream), cache_url=redis.url)
    for _ in range(2):
        assert "x-ingot-cache" not in predict(gateway, colour_images([1], seed=8))[2]


def test_grpc_hit_returns_the_same_response(start_gateway, upstream, redis):
    gateway = start_gateway(cached_routes(upstream), cache_url=redis.url)
    channel, prediction, _ = grpc_stubs(gateway.grpc_target)
    try:
        request = predict_request(images=colour_images([1], seed=12))
        first, call = prediction.Predict.with_call(request, timeout=30)
        assert dict(call.initial_metadata())["x-ingot-cache"] == "miss"

        def hit():  # type: ignore[no-untyped-def]
            response, again = prediction.Predict.with_call(request, timeout=30)
            return response if dict(again.initial_metadata())["x-ingot-cache"] == "hit" else None

        again = wait_for(hit, timeout_s=10, what="a gRPC cache hit")
        assert again.model_spec.version.value == first.model_spec.version.value == 2
        assert {k: v.SerializeToString() for k, v in again.outputs.items()} == {
            k: v.SerializeToString() for k, v in first.outputs.items()}
    finally:
        channel.close()


def test_redis_killed_and_restarted_never_fails_a_request(start_gateway, upstream):
    with redis_server() as server:
        gateway = start_gateway(cached_routes(upstream), cache_url=server.url)
        images = colour_images([0], seed=99)
        assert predict(gateway, images)[0] == 200
        server.kill()
        answers = [predict(gateway, images) for _ in range(10)]
        assert {(a[0], a[2]["x-ingot-cache"]) for a in answers} == {(200, "miss")}
        scraped = gateway.gateway.metrics.render().decode()
        counted = {line.split()[0]: float(line.split()[1]) for line in scraped.splitlines()
                   if line.startswith("ingot_gateway_cache_")}
        # every failed call is counted; past the breaker's threshold the gateway stops asking
        assert counted["ingot_gateway_cache_errors_total"] >= 3 and counted["ingot_gateway_cache_skipped_total"] >= 1
        server.restart()

        def hit():  # type: ignore[no-untyped-def]
            answer = predict(gateway, images)
            assert answer[0] == 200
            return answer if answer[2]["x-ingot-cache"] == "hit" else None

        wait_for(hit, timeout_s=15, what="a hit once Redis is back")
