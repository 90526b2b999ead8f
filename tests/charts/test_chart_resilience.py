"""gateway.cache and gateway.fallback become the routing table's cache, fallback chain, default
answer, deadline and breaker (parsed by the gateway's own loader); the Redis URL comes from a
Secret; traffic.outlierDetection renders Istio DestinationRules or Envoy Gateway's policy."""

from __future__ import annotations

import pytest
from helm_python import HelmError

from ingot.gateway.cache import CachePolicy
from ingot.gateway.routing import parse

INGOT = {"champion": {"version": 3}, "challenger": {"enabled": True, "version": 4}, "traffic": {"mode": "ingot"}}
REDIS = {"enabled": True, "redisSecret": {"existingSecret": "ingot-redis"}}
ENVOY_GATEWAY = "gateway.envoyproxy.io/v1alpha1/BackendTrafficPolicy"


def _routes(rendered):
    return parse(rendered.get("ConfigMap", "ingot-gateway-routes")["data"]["routes.yaml"])


def _env(rendered):
    container = rendered.get("Deployment", "ingot-gateway")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def test_no_cache_and_no_chain_by_default(render_values):
    rendered = render_values(INGOT)
    policy = _routes(rendered).resilience
    assert (policy.cache, policy.fallback, policy.default_class_id, policy.deadline_ms) == (None, (), None, None)
    assert (policy.breaker.failures, policy.breaker.open_s) == (5, 5.0)
    assert "INGOT_CACHE_URL" not in _env(rendered)
    assert not rendered.of_kind("DestinationRule") and not rendered.of_kind("BackendTrafficPolicy")


def test_cache_reads_the_redis_url_from_its_secret_and_the_table_carries_the_ttl(render_values):
    rendered = render_values({**INGOT, "gateway": {"cache": {**REDIS, "ttlSeconds": 120, "maxBytes": 4096,
                                                             "staleTtlSeconds": 3600}}})
    assert _routes(rendered).resilience.cache == CachePolicy(ttl_s=120, max_bytes=4096, stale_ttl_s=3600)
    assert _env(rendered)["INGOT_CACHE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "ingot-redis", "key": "url"}}
    policy = rendered.get("NetworkPolicy", "ingot-gateway")
    assert any(port.get("port") == 6379 for rule in policy["spec"]["egress"] for port in rule.get("ports", []))


def test_the_whole_chain_renders_into_a_table_the_gateway_accepts(render_values):
    fallback = {"steps": ["other_arm", "previous_champion", "cached", "default"], "defaultClassId": 7,
                "deadlineMs": 400, "breaker": {"failures": 3, "openSeconds": 2.5},
                "previousChampion": {"version": 2, "rest": "http://ingot-previous:8501", "grpc": "ingot-previous:8500"}}
    rendered = render_values({**INGOT, "gateway": {"cache": {**REDIS, "staleTtlSeconds": 600}, "fallback": fallback}})
    table = _routes(rendered)
    policy = table.resilience
    assert policy.fallback == ("other_arm", "previous_champion", "cached", "default")
    assert (policy.default_class_id, policy.deadline_ms) == (7, 400)
    assert (policy.breaker.failures, policy.breaker.open_s) == (3, 2.5)
    assert table.previous_champion is not None
    assert (table.previous_champion.version, table.previous_champion.grpc) == (2, "ingot-previous:8500")


@pytest.mark.parametrize(("gateway", "message"), [
    ({"cache": {"enabled": True}}, "gateway.cache.enabled needs gateway.cache.redisSecret.existingSecret"),
    ({"fallback": {"steps": ["default"]}}, "needs gateway.fallback.defaultClassId"),
    ({"fallback": {"defaultClassId": 1}}, "the default answer is opt-in"),
    ({"fallback": {"steps": ["cached"]}, "cache": REDIS}, "gateway.cache.staleTtlSeconds > 0"),
    ({"fallback": {"steps": ["previous_champion"]}}, "needs gateway.fallback.previousChampion.version"),
])
def test_inconsistent_values_fail_naming_the_key(render_values, gateway, message):
    with pytest.raises(HelmError, match=message.replace(".", r"\.")):
        render_values({**INGOT, "gateway": gateway})


def test_the_schema_refuses_an_unknown_step(render_values):
    with pytest.raises(HelmError, match="steps"):
        render_values({**INGOT, "gateway": {"fallback": {"steps": ["retry"]}}})


def test_istio_gets_a_destination_rule_per_variant_with_outlier_detection(render_values):
    rendered = render_values({**INGOT, "traffic": {"mode": "istio", "weights": {"champion": 90, "challenger": 10},
                                                   "outlierDetection": {"enabled": True, "consecutive5xxErrors": 3}}})
    rules = {r["metadata"]["name"]: r for r in rendered.of_kind("DestinationRule")}
    assert set(rules) == {"ingot-champion", "ingot-challenger"}
    champion = rules["ingot-champion"]
    assert champion["apiVersion"] == "networking.istio.io/v1"
    assert champion["spec"]["host"] == "ingot-champion.serving.svc.cluster.local"
    assert champion["spec"]["trafficPolicy"]["outlierDetection"] == {
        "consecutive5xxErrors": 3, "interval": "10s", "baseEjectionTime": "30s", "maxEjectionPercent": 50}
    assert not rendered.of_kind("BackendTrafficPolicy")


def test_gateway_api_gets_envoy_gateways_passive_health_check_on_both_routes(render_values):
    values = {**INGOT, "traffic": {"mode": "gatewayAPI", "weights": {"champion": 90, "challenger": 10},
                                   "gatewayAPI": {"parentRefs": [{"name": "edge"}]},
                                   "outlierDetection": {"enabled": True}}}
    rendered = render_values(values, api_versions=[ENVOY_GATEWAY])
    (policy,) = rendered.of_kind("BackendTrafficPolicy")
    assert {(r["kind"], r["name"]) for r in policy["spec"]["targetRefs"]} == {("HTTPRoute", "ingot"), ("GRPCRoute", "ingot")}
    assert {(o["kind"], o["metadata"]["name"]) for o in rendered.objects} >= {("HTTPRoute", "ingot"), ("GRPCRoute", "ingot")}
    assert policy["spec"]["healthCheck"]["passive"]["consecutive5XxErrors"] == 5
    assert not rendered.of_kind("DestinationRule")
    with pytest.raises(HelmError, match="install Envoy Gateway"):  # without its CRD: a clear error, not a dead object
        render_values(values)


def test_outlier_detection_renders_nothing_where_nothing_routes(render_values):
    for mode in ("none", "ingot"):
        rendered = render_values({**INGOT, "traffic": {"mode": mode, "outlierDetection": {"enabled": True}}})
        assert not rendered.of_kind("DestinationRule") and not rendered.of_kind("BackendTrafficPolicy")
