"""The prediction cache against a real redis-server: keys, TTL, LRU, Redis killed and restarted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from ingot.gateway.breaker import CLOSED, OPEN, Breaker
from ingot.gateway.cache import CachePolicy, PredictionCache, cache_key
from tests.support.redis import RedisServer, redis_server

SHA = "ab" * 32


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server(["--maxmemory-policy", "allkeys-lru"]) as server:
        yield server


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_key_depends_on_served_version_signature_filter_and_input_only() -> None:
    base = cache_key("digits", 1, "serving_default", ["class_ids"], SHA)
    assert base == cache_key("digits", "1", "serving_default", ["class_ids"], SHA)
    assert base != cache_key("digits", 2, "serving_default", ["class_ids"], SHA)  # promotion
    assert base != cache_key("digits", 1, "serving_bytes", ["class_ids"], SHA)
    assert base != cache_key("digits", 1, "serving_default", None, SHA)
    assert base != cache_key("digits", 1, "serving_default", ["class_ids"], "cd" * 32)
    assert base != cache_key("other", 1, "serving_default", ["class_ids"], SHA)
    # filter order does not matter: the same outputs are the same answer
    assert cache_key("m", 1, "s", ["a", "b"], SHA) == cache_key("m", 1, "s", ["b", "a"], SHA)


def test_hit_returns_the_bytes_stored_and_a_new_version_misses(redis: RedisServer) -> None:
    async def go() -> None:
        cache = PredictionCache(redis.url, timeout_s=0.5)
        answer = b'{"predictions": [[0.1, 0.9]]}\n'
        v1 = cache_key("digits", 1, "serving_default", None, SHA)
        assert await cache.get(v1) is None
        assert await cache.put(v1, answer, CachePolicy(ttl_s=60))
        assert await cache.get(v1) == answer
        assert await cache.get(cache_key("digits", 2, "serving_default", None, SHA)) is None
        assert (cache.stats.hits, cache.stats.misses, cache.stats.errors) == (1, 2, 0)
        await cache.close()

    run(go())


def test_ttl_expiry_keeps_the_stale_copy(redis: RedisServer) -> None:
    async def go() -> None:
        cache = PredictionCache(redis.url, timeout_s=0.5)
        key = cache_key("digits", 1, "serving_default", None, "ef" * 32)
        assert await cache.put(key, b"answer", CachePolicy(ttl_s=1, stale_ttl_s=60))
        assert await cache.get(key) == b"answer"
        await asyncio.sleep(1.2)
        assert await cache.get(key) is None
        assert await cache.get_stale(key) == b"answer"
        await cache.close()

    run(go())


def test_value_larger_than_max_bytes_is_not_stored(redis: RedisServer) -> None:
    async def go() -> None:
        cache = PredictionCache(redis.url, timeout_s=0.5)
        key = cache_key("digits", 1, "serving_default", None, "12" * 32)
        assert not await cache.put(key, b"x" * 101, CachePolicy(max_bytes=100))
        assert cache.stats.too_large == 1
        assert await cache.get(key) is None
        await cache.close()

    run(go())


def test_lru_under_maxmemory_evicts_the_least_recently_used() -> None:
    # Redis's LRU clock ticks once a second, so the test spaces its touches by more than that.
    extra = ["--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru", "--maxmemory-samples", "10"]
    with redis_server(extra) as server:

        async def go() -> None:
            cache = PredictionCache(server.url, timeout_s=1.0)
            policy = CachePolicy(ttl_s=600, max_bytes=1 << 20)
            value = b"v" * 10_000
            hot = cache_key("m", 1, "s", None, "00" * 32)
            old = [cache_key("m", 1, "s", None, f"a{i:063x}") for i in range(100)]
            assert await cache.put(hot, value, policy)
            for key in old:
                await cache.put(key, value, policy)
            await asyncio.sleep(1.1)
            assert await cache.get(hot) == value  # touched: younger than every `old` key
            await asyncio.sleep(1.1)
            new: list[str] = []
            # New answers until Redis has evicted 60 keys: only as many as it takes, so the
            # memory the new ones fill does not crowd out the hot key too.
            while int((await cache.client().info("stats"))["evicted_keys"]) < 60:
                assert len(new) < 1000, "maxmemory never evicted"
                new.append(cache_key("m", 1, "s", None, f"b{len(new):063x}"))
                await cache.put(new[-1], value, policy)
            assert await cache.get(hot) == value
            old_left = sum([await cache.get(key) is not None for key in old])
            new_left = sum([await cache.get(key) is not None for key in new])
            assert old_left <= 45 and new_left >= len(new) - 5  # the least recently used went first
            await cache.close()

        run(go())


def test_redis_killed_is_a_fast_miss_then_the_breaker_stops_asking_until_it_is_back() -> None:
    with redis_server() as server:

        async def go() -> None:
            # A dead server refuses connections at once: the timeout only bounds a slow one.
            cache = PredictionCache(server.url, timeout_s=0.05, breaker=Breaker(failures=3, open_s=0.3))
            key = cache_key("m", 1, "s", None, SHA)
            assert await cache.put(key, b"a", CachePolicy())
            server.kill()
            started = time.perf_counter()
            for _ in range(10):
                assert await cache.get(key) is None
            elapsed = time.perf_counter() - started
            assert cache.stats.errors == 3 and cache.stats.skipped == 7
            assert cache.breaker.state == OPEN
            assert elapsed < 1.0  # never a wait on the dead server
            server.restart()
            await asyncio.sleep(0.35)  # open period over: the next call is the half-open probe
            assert await cache.get(key) is None  # the restarted server is empty: a miss, not an error
            assert cache.breaker.state == CLOSED
            assert await cache.put(key, b"b", CachePolicy())
            assert await cache.get(key) == b"b"
            await cache.close()

        run(go())
