"""The routing table's resilience fields: cache, fallback chain, default answer, deadline."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from ingot.gateway.cache import CachePolicy
from ingot.gateway.routing import RoutingError, dump, parse, validate

BASE = {"model": "digits", "upstreams": {"champion": {"rest": "http://a:8501", "grpc": "a:8500", "version": 2}}}
PREVIOUS = {"rest": "http://p:8501", "grpc": "p:8500", "version": 1}


def table(**extra: Any) -> dict[str, Any]:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    doc.update(extra)
    return doc


def test_a_full_policy_loads_and_round_trips() -> None:
    doc = table(cache={"ttl_s": 60, "max_bytes": 4096, "stale_ttl_s": 3600},
                fallback=["other_arm", "previous_champion", "cached", "default"],
                default_answer={"class_id": 1}, deadline_ms=500, breaker={"failures": 3, "open_s": 2.5})
    doc["upstreams"]["previous_champion"] = PREVIOUS
    routes = validate(doc)
    policy = routes.resilience
    assert policy.cache == CachePolicy(ttl_s=60, max_bytes=4096, stale_ttl_s=3600)
    assert policy.fallback == ("other_arm", "previous_champion", "cached", "default")
    assert (policy.default_class_id, policy.deadline_ms) == (1, 500)
    assert (policy.breaker.failures, policy.breaker.open_s) == (3, 2.5)
    assert routes.previous_champion is not None and routes.previous_champion.version == 1
    assert "previous_champion" not in routes.upstreams  # never an A/B arm or a version label
    assert parse(dump(routes)) == routes


def test_no_policy_means_no_cache_no_fallback_no_deadline() -> None:
    policy = validate(table()).resilience
    assert (policy.cache, policy.fallback, policy.default_class_id, policy.deadline_ms) == (None, (), None, None)
    assert (policy.breaker.failures, policy.breaker.open_s) == (5, 5.0)  # Envoy/Istio's 5 consecutive 5xx
    assert "breaker" not in dump(validate(table()))


@pytest.mark.parametrize(("extra", "message"), [
    ({"fallback": ["other_arm", "retry"]}, "unknown step 'retry'"),
    ({"fallback": ["other_arm", "other_arm"]}, "listed twice"),
    ({"fallback": "default"}, "expected a list of steps"),
    ({"fallback": ["default"]}, "step 'default' needs default_answer"),
    ({"default_answer": {"class_id": 1}}, "the default answer is opt-in"),
    ({"fallback": ["default"], "default_answer": {"class_id": -1}}, "default_answer.class_id"),
    ({"fallback": ["default"], "default_answer": {"label": "cat"}}, "expected {class_id: N}"),
    ({"fallback": ["cached"], "cache": {"ttl_s": 60}}, "step 'cached' needs cache"),
    ({"fallback": ["previous_champion"]}, "needs upstreams.previous_champion"),
    ({"cache": {"ttl_s": 0}}, "cache.ttl_s: expected a whole number >= 1"),
    ({"cache": {"ttl": 60}}, "cache.ttl: unknown key"),
    ({"cache": 60}, "cache: expected a mapping"),
    ({"deadline_ms": 0}, "deadline_ms: expected a whole number >= 1"),
    ({"deadline_ms": True}, "deadline_ms"),
    ({"breaker": {"failures": 0}}, "breaker.failures: expected a whole number >= 1"),
    ({"breaker": {"open_s": 0}}, "breaker.open_s: expected seconds in (0, 3600]"),
    ({"breaker": {"half_open": 1}}, "breaker.half_open: unknown key"),
    ({"breaker": 5}, "breaker: expected a mapping"),
])
def test_each_invalid_field_is_refused_by_name(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(RoutingError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")):
        validate(table(**extra))
