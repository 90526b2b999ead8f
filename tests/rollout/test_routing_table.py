"""ingot.rollout.routing.routing_table: every table the controller writes keeps the gateway's
capture, cache, fallback, default answer, deadline, breaker and previous-champion upstream as the
target gives them, through weight changes and the promotion; a promotion promotes the challenger's
whole arm, its cascade included. Each table is read back by the gateway's own loader."""

from __future__ import annotations

import copy

import pytest

from ingot.gateway.cascade import Cascade
from ingot.gateway.fallback import RESILIENCE_KEYS
from ingot.gateway.routing import PREVIOUS_CHAMPION, Upstream, parse
from ingot.rollout.routing import POLICY_KEYS, routing_table, routing_yaml

POLICIES = {
    "capture": {"sample": 0.25, "max_bytes": 1 << 30, "retention_days": 7},
    "cache": {"ttl_s": 300, "max_bytes": 1 << 20, "stale_ttl_s": 86400},
    "fallback": ["other_arm", "previous_champion", "cached", "default"],
    "default_answer": {"class_id": 1},
    "deadline_ms": 500,
    "breaker": {"failures": 3, "open_s": 2.5},
}
PREVIOUS = {"rest": "http://old:8501", "grpc": "old:8500", "version": 2}
SMALL = {"champion": {"small": {"rest": "http://a-small:1", "grpc": "a-small:2", "version": 3}, "threshold": 0.93},
         "challenger": {"small": {"rest": "http://b-small:1", "grpc": "b-small:2", "version": 4}, "threshold": 0.91}}


def _target(**extra):
    return {"champion": {"rest": "http://a:1", "grpc": "a:2"}, "challenger": {"rest": "http://b:1", "grpc": "b:2"},
            **copy.deepcopy(POLICIES), PREVIOUS_CHAMPION: dict(PREVIOUS), **extra}


def _written(target, weight, champion_version=3, challenger_version=4):
    """What the gateway loads from the table the controller writes."""
    return parse(routing_yaml(routing_table(target, model="digits", experiment="digits-v4-vs-v3", weight=weight,
                                            champion_version=champion_version, challenger_version=challenger_version)))


def _expected():
    """The same settings as the gateway reads them from a hand-written table."""
    doc = {"model": "digits", "upstreams": {"champion": {"rest": "http://a:1", "grpc": "a:2", "version": 3},
                                            PREVIOUS_CHAMPION: PREVIOUS}, **POLICIES}
    return parse(routing_yaml(doc))


def test_the_carried_keys_are_the_gateways_own():
    assert set(POLICY_KEYS) == {"capture", *RESILIENCE_KEYS}


@pytest.mark.parametrize(("weight", "versions"), [(0, (3, 4)), (10, (3, 4)), (50, (3, 4)), (100, (3, 4)),
                                                   (0, (4, 4))], ids=["0", "10", "50", "100", "promoted"])
def test_every_table_keeps_capture_cache_fallback_deadline_and_breaker(weight, versions):
    expected = _expected()
    table = _written(_target(), weight, *versions)
    assert table.capture == expected.capture and table.capture is not None
    assert table.capture.sample == 0.25
    assert table.resilience == expected.resilience
    assert table.resilience.cache is not None and table.resilience.cache.ttl_s == 300
    assert table.resilience.fallback == ("other_arm", "previous_champion", "cached", "default")
    assert (table.resilience.default_class_id, table.resilience.deadline_ms) == (1, 500)
    assert (table.resilience.breaker.failures, table.resilience.breaker.open_s) == (3, 2.5)
    assert table.previous_champion == Upstream("http://old:8501", "old:8500", 2)


def test_each_key_alone_is_kept_and_nothing_is_added_without_it():
    bare = {"champion": {"rest": "http://a:1", "grpc": "a:2"}, "challenger": {"rest": "http://b:1", "grpc": "b:2"}}
    table = routing_table(bare, model="digits", experiment="e", weight=10, champion_version=3, challenger_version=4)
    assert not set(table) & {*POLICY_KEYS}
    assert set(table["upstreams"]) == {"champion", "challenger"}
    for key in ("capture", "cache", "deadline_ms", "breaker"):
        table = routing_table({**bare, key: POLICIES[key]}, model="digits", experiment="e", weight=50,
                              champion_version=3, challenger_version=4)
        assert table[key] == POLICIES[key]
        parse(routing_yaml(table))  # the gateway takes it


def test_the_target_is_never_changed_by_a_table():
    target = _target(champion={"rest": "http://a:1", "grpc": "a:2", "cascade": SMALL["champion"]})
    before = copy.deepcopy(target)
    table = routing_table(target, model="digits", experiment="e", weight=10, champion_version=3, challenger_version=4)
    table["cache"]["ttl_s"] = 1
    table["upstreams"]["champion"]["cascade"]["threshold"] = 0.1
    assert target == before


def test_before_promotion_each_arm_keeps_its_own_cascade():
    target = _target(champion={"rest": "http://a:1", "grpc": "a:2", "cascade": SMALL["champion"]},
                     challenger={"rest": "http://b:1", "grpc": "b:2", "cascade": SMALL["challenger"]})
    table = _written(target, 50)
    assert table.cascades == {"champion": Cascade(Upstream("http://a-small:1", "a-small:2", 3), 0.93),
                              "challenger": Cascade(Upstream("http://b-small:1", "b-small:2", 4), 0.91)}


def test_promotion_moves_the_challengers_cascade_to_the_champion_arm():
    """The old champion's small model (the old version's int8) must not front the new champion."""
    target = _target(champion={"rest": "http://a:1", "grpc": "a:2", "cascade": SMALL["champion"]},
                     challenger={"rest": "http://b:1", "grpc": "b:2", "cascade": SMALL["challenger"]})
    table = _written(target, 0, 4, 4)
    assert set(table.upstreams) == {"champion"} and table.champion.version == 4
    assert table.cascades == {"champion": Cascade(Upstream("http://b-small:1", "b-small:2", 4), 0.91)}


def test_promotion_of_a_challenger_without_a_cascade_leaves_the_champion_without_one():
    target = _target(champion={"rest": "http://a:1", "grpc": "a:2", "cascade": SMALL["champion"]})
    assert _written(target, 50).cascades == {"champion": Cascade(Upstream("http://a-small:1", "a-small:2", 3), 0.93)}
    assert _written(target, 0, 4, 4).cascades == {}
