"""The gateway's prediction cache on Redis: answers keyed by what determines them, never by ids.

Key: model, the *served* version, signature, output filter and the row's `input_sha256` (the
log's hash of the canonical decoded input), hashed together with sha256, so promotion or rollback
(a new served version) never serves an old answer and old entries age out by TTL and Redis's
`allkeys-lru`. Values are the upstream's answer, byte for byte. Each answer is also written under
a stale key with a longer TTL, which the fallback chain may serve when every upstream is down.

Redis slow or down is a miss within a few milliseconds (tight socket timeouts), counted, never an
error; a breaker stops asking while it is down.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ingot.gateway.breaker import Breaker

KEY_PREFIX = "ingot:p:"
STALE_PREFIX = "ingot:s:"
DEFAULT_TIMEOUT_S = 0.005  # connect and socket timeout: a slow Redis is a miss, not a wait


def cache_key(
    model: str, version: int | str, signature: str, output_filter: Sequence[str] | None, input_sha256: str
) -> str:
    """The key for one answer; the same input under another version or filter is another key."""
    parts = [model, str(version), signature, ",".join(sorted(output_filter or ())), input_sha256]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class CachePolicy:
    """A model's `cache:` block in the routing table."""

    ttl_s: int = 300
    max_bytes: int = 1 << 20  # a larger answer is not stored
    stale_ttl_s: int = 0  # >0: keep a stale copy this long for the fallback chain


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0  # Redis slow or down (each also a miss)
    skipped: int = 0  # not asked: the breaker is open
    too_large: int = 0


@dataclass
class PredictionCache:
    """An asyncio Redis client with tight timeouts behind a breaker."""

    url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    breaker: Breaker = field(default_factory=lambda: Breaker(failures=3, open_s=1.0))
    stats: CacheStats = field(default_factory=CacheStats)
    _client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import redis.asyncio as redis

            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                retry_on_timeout=False,
                retry=None,
                health_check_interval=0,
            )
        return self._client

    async def get(self, key: str) -> bytes | None:
        """The cached answer, or None on a miss, an error or an open breaker."""
        value = await self._call("get", KEY_PREFIX + key)
        if value is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return bytes(value)

    async def get_stale(self, key: str) -> bytes | None:
        """A copy kept past the TTL for the fallback chain (None when absent or unreachable)."""
        value = await self._call("get", STALE_PREFIX + key)
        return None if value is None else bytes(value)

    async def put(self, key: str, value: bytes, policy: CachePolicy) -> bool:
        """Store an answer (and its stale copy); False when too large or Redis is unreachable."""
        if len(value) > policy.max_bytes:
            self.stats.too_large += 1
            return False
        ok = await self._call("set", KEY_PREFIX + key, value, ex=policy.ttl_s) is not None
        if ok and policy.stale_ttl_s > 0:
            await self._call("set", STALE_PREFIX + key, value, ex=policy.stale_ttl_s)
        return ok

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if not self.breaker.allow():
            self.stats.skipped += 1
            return None
        try:
            result = await getattr(self.client(), method)(*args, **kwargs)
        except Exception:  # noqa: BLE001 - any Redis trouble is a miss, never an error
            self.stats.errors += 1
            self.breaker.failure()
            return None
        self.breaker.success()
        return result

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
