"""The gateway's prediction cache on Redis: answers keyed by what determines them, never by ids.

Key: model, the *served* version, signature, output filter and the row's `input_sha256` (the
log's hash of the canonical decoded input), hashed together with sha256, so promotion or rollback
(a new served version) never serves an old answer and old entries age out by TTL and Redis's
`allkeys-lru`. Values are the upstream's answer, byte for byte. Each answer is also written under
a stale key with a longer TTL, which the fallback chain may serve when every upstream is down.

Redis slow or down is a miss within milliseconds (a dead server refuses at once; a slow one is cut
off by a 20 ms timeout, `--cache-timeout-ms`), counted, never an error; a breaker stops asking
while it is down.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ingot.gateway.breaker import Breaker

KEY_PREFIX = "ingot:p:"
STALE_PREFIX = "ingot:s:"
# Connect and call timeout: a slow Redis is a miss, not a wait. Measured on the gateway's event loop,
# so it must leave room for a busy loop's own delays (5 ms timed out healthy calls under load).
DEFAULT_TIMEOUT_S = 0.02


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
    _pending: set[Any] = field(default_factory=set)

    def client(self) -> Any:
        if self._client is None:
            import redis.asyncio as redis
            from redis.driver_info import DriverInfo

            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                retry_on_timeout=False,
                retry=None,
                health_check_interval=0,
                driver_info=DriverInfo(name=None, lib_version=None),  # no CLIENT SETINFO round trips on connect
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

    def store_later(self, key: str, forwarded: Any, policy: CachePolicy) -> None:
        """Store an upstream's answer without holding up the caller's (REST body or gRPC message)."""
        import asyncio

        value = forwarded.body if forwarded.message is None else forwarded.message.SerializeToString()
        if value is None:
            return
        task = asyncio.get_running_loop().create_task(self.put(key, bytes(value), policy))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def request_key(model: str, version: int, call: Any, protocol: str) -> str:
    """The cache key of one predict call: its rows' `input_sha256` (the log's hash of the decoded
    input) under the served version, signature and output filter. The answer's wire form (gRPC,
    REST row or columnar) is part of the key, since the bytes differ."""
    from ingot.gateway.observe import row_hashes
    from ingot.protocol.signatures import SERVING_DEFAULT

    rows = hashlib.sha256()
    for digest in row_hashes(call.inputs):
        rows.update(digest.encode())
    wire_form = protocol if call.grpc_request is not None else ("rest-row" if call.row_format else "rest-columnar")
    signature = f"{call.signature_name or SERVING_DEFAULT}@{wire_form}"
    return cache_key(model, version, signature, list(call.output_filter), rows.hexdigest())


def cached_answer(value: bytes, call: Any) -> tuple[Any, Any]:
    """A stored answer as the front end returns it (REST bytes, or a PredictResponse), with its
    outputs decoded for the log."""
    from ingot.gateway.forward import LOGGED_OUTPUTS, rest_outputs
    from ingot.serving.backend import Forwarded

    if call.grpc_request is None:
        return Forwarded(status=200, body=value), rest_outputs(value)
    from tensorflow_serving.apis import predict_pb2

    from ingot.protocol.tensors import outputs_from_proto

    response = predict_pb2.PredictResponse.FromString(value)
    return Forwarded(message=response), outputs_from_proto(response.outputs, names=LOGGED_OUTPUTS, max_elements=1 << 26)
