"""The chart's rollout section: the controller Deployment (restricted PSS, DB URL from a Secret,
metrics), RBAC that allows exactly what the Kubernetes actuator does (checked by running the
actuator against a loopback API holding the rendered objects), and `helm upgrade` leaving the
controller-patched objects as the controller left them."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from helm_python import HelmError, _native

from ingot.rollout.kubernetes import KubernetesActuator
from tests.rollout.kube_api import KubeAPI

from .chart_support import NAMESPACE, RELEASE, Rendered, scenario_values
from .kube_checks import K8S_VERSIONS, restricted_violations, validate_any

ROLLOUT = {"enabled": True, "database": {"secretName": "ingot-db", "secretKey": "url"}}
PLURALS = {"ConfigMap": ("v1/configmaps", ""), "HTTPRoute": ("gateway.networking.k8s.io/v1/httproutes", "gateway.networking.k8s.io"),
           "GRPCRoute": ("gateway.networking.k8s.io/v1/grpcroutes", "gateway.networking.k8s.io"),
           "VirtualService": ("networking.istio.io/v1/virtualservices", "networking.istio.io")}


def render_release(chart, values: dict, *, upgrade: bool = False) -> Rendered:
    """Like chart_support.render, with Helm's is_install/is_upgrade (what `helm upgrade` renders)."""
    options = {"name": RELEASE, "namespace": NAMESPACE, "is_install": not upgrade, "is_upgrade": upgrade}
    templates = json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(options)))
    objects = [doc for path, text in sorted(templates.items()) if not path.endswith("NOTES.txt")
               for doc in yaml.safe_load_all(text) if doc]
    return Rendered(objects=objects, notes="", templates=templates)


def with_rollout(scenario: str, **rollout: Any) -> dict:
    values = scenario_values(scenario)
    values["rollout"] = {**ROLLOUT, **rollout}
    return values


def controller_target(rendered: Rendered) -> dict:
    container = rendered.get("Deployment", f"{RELEASE}-rollout")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    return json.loads(env["INGOT_ROLLOUT_TARGET"]["value"])


def test_disabled_by_default(render_values):
    assert not [o for o in render_values({}).objects if "rollout" in o["metadata"]["name"]]


def test_controller_deployment_is_restricted_and_reads_the_database_url_from_a_secret(chart):
    rendered = render_release(chart, with_rollout("canary-gateway-api"))
    deployment = rendered.get("Deployment", f"{RELEASE}-rollout")
    pod = deployment["spec"]["template"]
    assert restricted_violations(pod["metadata"], pod["spec"]) == []
    container = pod["spec"]["containers"][0]
    assert container["args"][:2] == ["rollout", "run"] and "--port=8080" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["INGOT_REGISTRY_URL"]["valueFrom"]["secretKeyRef"] == {"name": "ingot-db", "key": "url"}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"
    assert pod["spec"]["serviceAccountName"] == f"{RELEASE}-rollout"
    assert rendered.get("Service", f"{RELEASE}-rollout")["spec"]["ports"][0]["port"] == 8080
    for obj in rendered.objects:
        if "rollout" in obj["metadata"]["name"]:
            for version in K8S_VERSIONS:
                validate_any(obj, version)


def test_the_database_secret_is_required(chart):
    with pytest.raises(HelmError, match="rollout.database.secretName is empty"):
        render_release(chart, with_rollout("canary-gateway-api", database={"secretName": ""}))


def test_schema_rejects_unknown_rollout_keys_and_latest(chart):
    with pytest.raises(HelmError, match="(?i)additional propert|not allowed"):
        render_release(chart, with_rollout("minimal", replicas=2))
    with pytest.raises(HelmError):
        render_release(chart, with_rollout("minimal", image={"repository": "x", "tag": "latest"}))


def allowed(rendered: Rendered) -> set[tuple[str, str, str, str]]:
    """(api group, resource, name, verb) the rendered Role grants."""
    role = rendered.get("Role", f"{RELEASE}-rollout")
    return {(group, resource, name, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for name in rule["resourceNames"] for verb in rule["verbs"]}


def used(api: KubeAPI) -> set[tuple[str, str, str, str]]:
    out = set()
    for method, path in api.requests():
        parts = path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        resource, name = parts[-2], parts[-1]
        out.add((group, resource, name, {"GET": "get", "PATCH": "patch"}[method]))
    return out


@pytest.mark.parametrize("scenario, mode", [("gateway", "ingot"), ("canary-gateway-api", "gatewayAPI"),
                                            ("canary-istio-mirror", "istio")])
def test_rbac_allows_exactly_what_the_actuator_does(chart, scenario, mode, monkeypatch):
    rendered = render_release(chart, with_rollout(scenario))
    target = controller_target(rendered)
    assert target["mode"] == mode and target["namespace"] == NAMESPACE and target["release"] == RELEASE
    with KubeAPI() as api:
        for obj in rendered.objects:
            if obj["kind"] in PLURALS:
                api.put(PLURALS[obj["kind"]][0], NAMESPACE, obj["metadata"]["name"], obj)
        if mode == "ingot":  # the controller's first table keeps what the chart's table says
            rendered_table = yaml.safe_load(rendered.get("ConfigMap", target["routes_configmap"])["data"]["routes.yaml"])
        actuator = KubernetesActuator(api.client, {**target, "drain_s": 0})
        monkeypatch.setattr(actuator, "available", lambda rollout, arm, version: True)
        rollout = SimpleNamespace(model="ingot", experiment="ingot-v4-vs-v3-abc123", champion_version=3,
                                  challenger_version=4)
        actuator.prepare(rollout)
        actuator.set_weight(rollout, 50)
        if mode == "ingot":
            table = yaml.safe_load(api.get("v1/configmaps", NAMESPACE, target["routes_configmap"])["data"]["routes.yaml"])
            assert table["upstreams"] == {arm: {**rendered_table["upstreams"][arm], "version": version}
                                          for arm, version in (("champion", 3), ("challenger", 4))}
            for key in ("model", "caller_header", "mirror", "feedback_token_file"):
                assert table[key] == rendered_table[key], key
        actuator.promote(rollout)
        actuator.set_weight(rollout, 0)
        assert used(api) == allowed(rendered)


def test_helm_upgrade_keeps_what_the_controller_patched(chart):
    install = render_release(chart, with_rollout("canary-gateway-api"))
    upgrade = render_release(chart, with_rollout("canary-gateway-api"), upgrade=True)
    patched = [("ConfigMap", f"{RELEASE}-champion-model-config"), ("ConfigMap", f"{RELEASE}-challenger-model-config"),
               ("HTTPRoute", RELEASE), ("GRPCRoute", RELEASE)]
    for kind, name in patched:
        annotations = install.get(kind, name)["metadata"]["annotations"]
        assert annotations["helm.sh/resource-policy"] == "keep"  # a later upgrade leaving it out keeps it
        with pytest.raises(KeyError):
            upgrade.get(kind, name)  # not rendered on upgrade: Helm leaves the live object as patched
    assert upgrade.get("Deployment", f"{RELEASE}-rollout")
    assert upgrade.get("Deployment", f"{RELEASE}-champion")  # everything else still upgrades
    istio = render_release(chart, with_rollout("canary-istio-mirror"), upgrade=True)
    with pytest.raises(KeyError):
        istio.get("VirtualService", RELEASE)
    # Without the controller, an upgrade renders weights and versions from values as before.
    plain = render_release(chart, scenario_values("canary-gateway-api"), upgrade=True)
    assert "annotations" not in plain.get("HTTPRoute", RELEASE)["metadata"]
    assert plain.get("ConfigMap", f"{RELEASE}-champion-model-config")


def test_gateway_routing_table_is_kept_on_upgrade_too(chart):
    name = f"{RELEASE}-gateway-routes"
    install = render_release(chart, with_rollout("gateway"))
    assert install.get("ConfigMap", name)["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    with pytest.raises(KeyError):
        render_release(chart, with_rollout("gateway"), upgrade=True).get("ConfigMap", name)
    assert render_release(chart, scenario_values("gateway"), upgrade=True).get("ConfigMap", name)


def test_network_policy_lets_only_the_controller_in_to_read_model_status(chart):
    values = with_rollout("gateway")
    values["networkPolicy"] = {"enabled": True}
    policy = render_release(chart, values).get("NetworkPolicy", RELEASE)
    controller_rules = [rule for rule in policy["spec"]["ingress"]
                        if any(peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                               == "rollout-controller" for peer in rule["from"])]
    assert controller_rules == [{"from": [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "rollout-controller"}}}],
        "ports": [{"port": "http", "protocol": "TCP"}]}]
    values["rollout"] = {"enabled": False}
    policy = render_release(chart, values).get("NetworkPolicy", RELEASE)
    assert "rollout-controller" not in json.dumps(policy)


@pytest.mark.parametrize("change, message", [
    ({"traffic": {"mode": "none"}}, "needs a traffic split to drive"),
    ({"challenger": {"enabled": False}, "traffic": {"mode": "ingot", "weights": {"champion": 100, "challenger": 0}}},
     "needs challenger.enabled"),
])
def test_rollout_needs_a_split_and_a_challenger(chart, change, message):
    values = {**with_rollout("gateway"), **change}
    with pytest.raises(HelmError, match=message):
        render_release(chart, values)
