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


@pytest.mark.parametrize("scenario, mode", [("minimal", "ingot"), ("canary-gateway-api", "gatewayAPI"),
                                            ("canary-istio-mirror", "istio")])
def test_rbac_allows_exactly_what_the_actuator_does(chart, scenario, mode, monkeypatch):
    values = with_rollout(scenario)
    if mode == "ingot":
        values["challenger"] = {"enabled": True, "version": 4}
        values["champion"] = {"version": 3}
    rendered = render_release(chart, values)
    target = controller_target(rendered)
    assert target["mode"] == mode and target["namespace"] == NAMESPACE and target["release"] == RELEASE
    with KubeAPI() as api:
        for obj in rendered.objects:
            if obj["kind"] in PLURALS:
                api.put(PLURALS[obj["kind"]][0], NAMESPACE, obj["metadata"]["name"], obj)
        if mode == "ingot":  # the gateway's routing ConfigMap (rendered by the gateway section)
            api.put("v1/configmaps", NAMESPACE, target["routes_configmap"], {
                "metadata": {"labels": {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/part-of": "ingot"}},
                "data": {"routes.yaml": ""}})
        actuator = KubernetesActuator(api.client, {**target, "drain_s": 0})
        monkeypatch.setattr(actuator, "available", lambda rollout, arm, version: True)
        rollout = SimpleNamespace(model="ingot", experiment="ingot-v4-vs-v3-abc123", champion_version=3,
                                  challenger_version=4)
        actuator.prepare(rollout)
        actuator.set_weight(rollout, 50)
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
