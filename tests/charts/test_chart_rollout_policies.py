"""The rollout controller's target carries the gateway's capture, cache, fallback, default answer,
deadline, breaker and previous-champion upstream from the same values the routing table renders,
so the tables the Kubernetes actuator writes (run against a stand-in API holding the rendered
objects, read back by the gateway's own loader) keep them through every weight and the promotion."""

from __future__ import annotations

from types import SimpleNamespace

import yaml

from ingot.gateway.routing import PREVIOUS_CHAMPION, parse
from ingot.rollout.kubernetes import KubernetesActuator
from ingot.rollout.routing import POLICY_KEYS
from tests.rollout.kube_api import KubeAPI

from .chart_support import NAMESPACE
from .test_chart_rollout import allowed, controller_target, render_release, used, with_rollout

GATEWAY = {
    "capture": {"enabled": True, "url": "s3://captures/ingot", "sample": 0.2, "maxBytes": "5GiB", "retentionDays": 14},
    "cache": {"enabled": True, "redisSecret": {"existingSecret": "ingot-redis"}, "ttlSeconds": 120,
              "maxBytes": 4096, "staleTtlSeconds": 600},
    "fallback": {"steps": ["other_arm", "previous_champion", "cached", "default"], "defaultClassId": 7,
                 "deadlineMs": 400, "breaker": {"failures": 3, "openSeconds": 2.5},
                 "previousChampion": {"version": 2, "rest": "http://ingot-previous:8501", "grpc": "ingot-previous:8500"}},
}


def _values():
    values = with_rollout("gateway-rollout")
    values["gateway"] = {**values.get("gateway", {}), **GATEWAY}
    return values


def _policies(table):
    return (table.capture, table.resilience, table.previous_champion)


def test_the_rendered_target_and_table_agree_on_the_policies(chart):
    rendered = render_release(chart, _values())
    target = controller_target(rendered)
    doc = yaml.safe_load(rendered.get("ConfigMap", target["routes_configmap"])["data"]["routes.yaml"])
    for key in POLICY_KEYS:
        assert key in doc, key
        assert target[key] == doc[key], key
    assert target[PREVIOUS_CHAMPION] == doc["upstreams"][PREVIOUS_CHAMPION]
    table = parse(yaml.safe_dump(doc))
    assert table.capture is not None and table.capture.sample == 0.2
    assert table.resilience.cache is not None and table.resilience.cache.ttl_s == 120
    assert table.resilience.deadline_ms == 400


def test_without_the_policies_the_target_carries_none(chart):
    target = controller_target(render_release(chart, with_rollout("gateway-rollout")))
    assert not {"capture", "cache", "fallback", "default_answer", "deadline_ms", PREVIOUS_CHAMPION} & set(target)


def test_the_controllers_tables_keep_capture_cache_and_fallback_through_the_promotion(chart, monkeypatch):
    rendered = render_release(chart, _values())
    target = controller_target(rendered)
    installed = parse(rendered.get("ConfigMap", target["routes_configmap"])["data"]["routes.yaml"])
    assert installed.capture is not None and installed.resilience.fallback
    with KubeAPI() as api:
        routes = rendered.get("ConfigMap", target["routes_configmap"])
        api.put("v1/configmaps", NAMESPACE, routes["metadata"]["name"], routes)
        for arm in ("champion", "challenger"):
            config = rendered.get("ConfigMap", f"ingot-{arm}-model-config")
            api.put("v1/configmaps", NAMESPACE, config["metadata"]["name"], config)
        actuator = KubernetesActuator(api.client, {**target, "drain_s": 0})
        monkeypatch.setattr(actuator, "available", lambda rollout, arm, version: True)
        rollout = SimpleNamespace(model="ingot", experiment="digits-v4-vs-v3", champion_version=3, challenger_version=4)

        def written():
            return parse(api.get("v1/configmaps", NAMESPACE, target["routes_configmap"])["data"]["routes.yaml"])

        actuator.prepare(rollout)
        for weight in (10, 50):
            actuator.set_weight(rollout, weight)
            table = written()
            assert table.challenger_weight == weight
            assert _policies(table) == _policies(installed)
        actuator.promote(rollout)
        promoted = written()
        assert promoted.champion.version == 4 and promoted.challenger is None
        assert _policies(promoted) == _policies(installed)
        assert used(api) <= allowed(rendered)
