"""traffic.mode ingot: the gateway Deployment, its Service/HPA/PDB, the routing ConfigMap (read by the
gateway's own loader), Secrets, probes, and a NetworkPolicy that admits only the gateway."""

from __future__ import annotations

import pytest
from helm_python import HelmError, HelmValuesError

from ingot.gateway.routing import parse

GATEWAY_KINDS = {("Deployment", "ingot-gateway"), ("Service", "ingot-gateway"), ("ConfigMap", "ingot-gateway-routes"),
                 ("HorizontalPodAutoscaler", "ingot-gateway"), ("PodDisruptionBudget", "ingot-gateway")}


@pytest.fixture(scope="module")
def gateway(render_scenario):
    return render_scenario("gateway")


def _refs(rendered):
    return {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}


def test_the_gateway_objects_exist_only_in_ingot_mode(gateway, minimal, canary_gateway, canary_istio):
    assert GATEWAY_KINDS <= _refs(gateway)
    for other in (minimal, canary_gateway, canary_istio):
        assert not GATEWAY_KINDS & _refs(other)


def test_the_routing_configmap_is_a_table_the_gateway_accepts(gateway):
    table = parse(gateway.get("ConfigMap", "ingot-gateway-routes")["data"]["routes.yaml"])
    assert (table.model, table.experiment, table.caller_header) == ("ingot", "digits-v4-vs-v3", "x-ingot-caller")
    assert (table.challenger_weight, table.mirror) == (10, 20)
    assert table.champion.rest == "http://ingot-champion.serving.svc.cluster.local:8501"
    assert table.champion.grpc == "ingot-champion.serving.svc.cluster.local:8500"
    assert (table.champion.version, table.challenger.version) == (3, 4)
    assert table.feedback_token_file == "/var/run/secrets/ingot/feedback/token"


def test_without_a_challenger_the_table_has_the_champion_only(render_values):
    rendered = render_values({"champion": {"version": 7}, "traffic": {"mode": "ingot"}})
    table = parse(rendered.get("ConfigMap", "ingot-gateway-routes")["data"]["routes.yaml"])
    assert (table.challenger, table.challenger_weight, table.experiment, table.feedback_token_file) == (
        None, 0, "ingot-v7", "")


def test_the_gateway_pod_runs_ingot_gateway_with_secrets_never_in_the_spec(gateway):
    spec = gateway.get("Deployment", "ingot-gateway")["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["image"] == "ghcr.io/ingot/ingot:0.1.0"
    assert container["command"] == ["ingot", "gateway"]
    args = container["args"]
    assert {"--routes=/etc/ingot/gateway/routes.yaml", "--host=0.0.0.0", "--port=8500", "--rest_api_port=8501",
            "--model_repository=/models"} <= set(args)
    env = {e["name"]: e for e in container["env"]}
    assert env["INGOT_LOG_URL"]["valueFrom"] == {"secretKeyRef": {"name": "ingot-registry", "key": "url"}}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["feedback-token"]["mountPath"] == "/var/run/secrets/ingot/feedback" and mounts["feedback-token"]["readOnly"]
    assert mounts["models"]["readOnly"] and mounts["routes"]["mountPath"] == "/etc/ingot/gateway"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["feedback-token"]["secret"]["secretName"] == "ingot-feedback"
    assert volumes["routes"]["configMap"]["name"] == "ingot-gateway-routes"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_the_gateway_scales_on_its_own_and_its_service_is_scraped(gateway):
    hpa = gateway.get("HorizontalPodAutoscaler", "ingot-gateway")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "ingot-gateway" and (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert "replicas" not in gateway.get("Deployment", "ingot-gateway")["spec"]
    pdb = gateway.get("PodDisruptionBudget", "ingot-gateway")["spec"]
    assert pdb["selector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    service = gateway.get("Service", "ingot-gateway")
    assert service["metadata"]["labels"]["ingot.dev/scrape"] == "true"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"grpc": 8500, "http": 8501}
    pod_labels = gateway.get("Deployment", "ingot-gateway")["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in service["spec"]["selector"].items())


def test_in_ingot_mode_only_the_gateway_and_monitoring_reach_the_model_servers(gateway):
    clients, monitoring = gateway.get("NetworkPolicy", "ingot")["spec"]["ingress"]
    gateway_pods = gateway.get("Deployment", "ingot-gateway")["spec"]["template"]["metadata"]["labels"]
    peers = clients["from"]
    assert all("namespaceSelector" not in p for p in peers)  # no mesh or ingress namespaces
    selectors = [p["podSelector"]["matchLabels"] for p in peers]
    assert [s for s in selectors if s.get("app.kubernetes.io/component") != "helm-test"] == [
        {"app.kubernetes.io/name": "ingot", "app.kubernetes.io/instance": "ingot", "app.kubernetes.io/component": "gateway"}]
    assert all(gateway_pods[k] == v for k, v in selectors[0].items())
    assert monitoring["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_notes_show_how_to_call_the_gateway_and_send_feedback(gateway):
    assert "http://ingot-gateway.serving.svc:8501" in gateway.notes
    assert "x-ingot-request-id" in gateway.notes
    assert 'curl -X POST $GW/v1/feedback -H "Authorization: Bearer $TOKEN"' in gateway.notes
    assert "ingot feedback <x-ingot-request-id> <label>" in gateway.notes


@pytest.mark.parametrize(("values", "message"), [
    ({"gateway": {"mirrorPercent": 150}}, "/gateway/mirrorPercent"),
    ({"gateway": {"mirorPercent": 5}}, "additional properties 'mirorPercent' not allowed"),
    ({"gateway": {"callerHeader": "X Caller"}}, "/gateway/callerHeader"),
    ({"gateway": {"image": {"tag": "latest"}}}, "/gateway/image/tag"),
    ({"gateway": {"logDatabase": {"existingSecret": "Bad_Name"}}}, "/gateway/logDatabase/existingSecret"),
    ({"traffic": {"mode": "ingott"}}, "value must be one of 'none', 'gatewayAPI', 'istio', 'ingot'"),
])
def test_the_schema_covers_the_gateway_keys(chart, values, message):
    with pytest.raises(HelmValuesError) as err:
        chart.validate_schema(values)
    assert message in str(err.value)


def test_mirroring_without_a_challenger_is_refused(render_values):
    with pytest.raises(HelmError, match="gateway.mirrorPercent is 10 but challenger.enabled is false"):
        render_values({"traffic": {"mode": "ingot"}, "gateway": {"mirrorPercent": 10}})
