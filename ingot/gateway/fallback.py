"""A model's resilience policy from the routing table: the prediction cache, the fallback chain,
the default answer and the per-request deadline.

```yaml
cache: {ttl_s: 300, max_bytes: 1048576, stale_ttl_s: 86400}
fallback: [other_arm, previous_champion, cached, default]   # in order; each step is opt-in
default_answer: {class_id: 1}
deadline_ms: 500
breaker: {failures: 5, open_s: 5}   # per upstream; these are the defaults
```
Every answer from a step of the chain carries `x-ingot-degraded: <step>` and is never A/B
evidence. Without a `fallback` list a champion that cannot answer is a 503, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ingot.gateway.cache import CachePolicy

OTHER_ARM = "other_arm"
PREVIOUS_CHAMPION = "previous_champion"
CACHED = "cached"
DEFAULT = "default"
STEPS = (OTHER_ARM, PREVIOUS_CHAMPION, CACHED, DEFAULT)
RESILIENCE_KEYS = ("cache", "fallback", "default_answer", "deadline_ms", "breaker")
_BREAKER_KEYS = ("failures", "open_s")
_CACHE_KEYS = ("ttl_s", "max_bytes", "stale_ttl_s")


class PolicyError(ValueError):
    """The message names the routing-table key at fault and what is expected."""


@dataclass(frozen=True)
class BreakerPolicy:
    """When an upstream's breaker opens (consecutive failures, as Envoy/Istio's outlier detection
    ejects after 5 consecutive 5xx) and how long it stays open before one probe."""

    failures: int = 5
    open_s: float = 5.0


@dataclass(frozen=True)
class Resilience:
    cache: CachePolicy | None = None
    fallback: tuple[str, ...] = ()
    default_class_id: int | None = None
    deadline_ms: int | None = None
    breaker: BreakerPolicy = BreakerPolicy()

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.cache is not None:
            doc["cache"] = {"ttl_s": self.cache.ttl_s, "max_bytes": self.cache.max_bytes,
                            "stale_ttl_s": self.cache.stale_ttl_s}
        if self.fallback:
            doc["fallback"] = list(self.fallback)
        if self.default_class_id is not None:
            doc["default_answer"] = {"class_id": self.default_class_id}
        if self.deadline_ms is not None:
            doc["deadline_ms"] = self.deadline_ms
        if self.breaker != BreakerPolicy():
            doc["breaker"] = {"failures": self.breaker.failures, "open_s": self.breaker.open_s}
        return doc


def _count(value: Any, key: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PolicyError(f"routing table {key}: expected a whole number >= {minimum}, got {value!r}")
    return value


def parse_resilience(doc: Mapping[str, Any], *, has_previous_champion: bool) -> Resilience:
    cache = None
    if doc.get("cache") is not None:
        block = doc["cache"]
        if not isinstance(block, Mapping):
            raise PolicyError(f"routing table cache: expected a mapping {{ttl_s, max_bytes, stale_ttl_s}}, got {block!r}")
        unknown = sorted(str(k) for k in block if k not in _CACHE_KEYS)
        if unknown:
            raise PolicyError(f"routing table cache.{unknown[0]}: unknown key; expected one of {', '.join(_CACHE_KEYS)}")
        defaults = CachePolicy()
        cache = CachePolicy(
            ttl_s=_count(block.get("ttl_s", defaults.ttl_s), "cache.ttl_s", minimum=1),
            max_bytes=_count(block.get("max_bytes", defaults.max_bytes), "cache.max_bytes", minimum=1),
            stale_ttl_s=_count(block.get("stale_ttl_s", defaults.stale_ttl_s), "cache.stale_ttl_s", minimum=0),
        )
    steps = doc.get("fallback") or []
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise PolicyError(f"routing table fallback: expected a list of steps from {', '.join(STEPS)}, got {steps!r}")
    for step in steps:
        if step not in STEPS:
            raise PolicyError(f"routing table fallback: unknown step {step!r}; expected one of {', '.join(STEPS)}")
    if len(set(steps)) != len(steps):
        raise PolicyError(f"routing table fallback: a step is listed twice in {steps!r}")
    default_class_id = None
    if doc.get("default_answer") is not None:
        answer = doc["default_answer"]
        if not isinstance(answer, Mapping) or set(answer) != {"class_id"}:
            raise PolicyError(f"routing table default_answer: expected {{class_id: N}}, got {answer!r}")
        default_class_id = _count(answer["class_id"], "default_answer.class_id", minimum=0)
    if DEFAULT in steps and default_class_id is None:
        raise PolicyError("routing table fallback: step 'default' needs default_answer: {class_id: N}")
    if default_class_id is not None and DEFAULT not in steps:
        raise PolicyError("routing table default_answer: set, but 'default' is not a fallback step; add it to "
                          "fallback (the default answer is opt-in)")
    if CACHED in steps and (cache is None or cache.stale_ttl_s == 0):
        raise PolicyError("routing table fallback: step 'cached' needs cache: {stale_ttl_s: N > 0} (the copy kept "
                          "past the TTL for it)")
    if PREVIOUS_CHAMPION in steps and not has_previous_champion:
        raise PolicyError("routing table fallback: step 'previous_champion' needs upstreams.previous_champion "
                          "{rest, grpc, version}")
    deadline = doc.get("deadline_ms")
    deadline_ms = None if deadline is None else _count(deadline, "deadline_ms", minimum=1)
    return Resilience(cache=cache, fallback=tuple(steps), default_class_id=default_class_id, deadline_ms=deadline_ms,
                      breaker=_breaker(doc.get("breaker")))


def _breaker(block: Any) -> BreakerPolicy:
    if block is None:
        return BreakerPolicy()
    if not isinstance(block, Mapping):
        raise PolicyError(f"routing table breaker: expected a mapping {{failures, open_s}}, got {block!r}")
    unknown = sorted(str(k) for k in block if k not in _BREAKER_KEYS)
    if unknown:
        raise PolicyError(f"routing table breaker.{unknown[0]}: unknown key; expected one of {', '.join(_BREAKER_KEYS)}")
    defaults = BreakerPolicy()
    open_s = block.get("open_s", defaults.open_s)
    if isinstance(open_s, bool) or not isinstance(open_s, int | float) or not 0 < open_s <= 3600:
        raise PolicyError(f"routing table breaker.open_s: expected seconds in (0, 3600], got {open_s!r}")
    return BreakerPolicy(failures=_count(block.get("failures", defaults.failures), "breaker.failures", minimum=1),
                         open_s=float(open_s))


def default_answer(class_id: int, rows: int, call: Any) -> tuple[Any, dict[str, Any]]:
    """The configured default as the caller's wire form expects it: `class_ids` only (the one
    output every Ingot classifier has), one per row; and the outputs for the log."""
    import numpy as np

    from ingot.protocol.signatures import CLASS_IDS
    from ingot.serving.backend import Forwarded

    ids = np.full((rows,), class_id, dtype=np.int64)
    if call.grpc_request is not None:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        response = predict_pb2.PredictResponse()
        response.model_spec.name = call.spec.name
        response.outputs[CLASS_IDS].CopyFrom(tf.make_tensor_proto(ids))
        return Forwarded(message=response), {CLASS_IDS: ids}
    import orjson

    if call.row_format:
        body = orjson.dumps({"predictions": [{CLASS_IDS: class_id} for _ in range(rows)]})
    else:
        body = orjson.dumps({"outputs": {CLASS_IDS: [class_id] * rows}})
    return Forwarded(status=200, body=body), {CLASS_IDS: ids}
