"""Issue 16 in the chart, rendered with Helm's own engine: the routes never forward TF Serving's
model loading, Istio denies it on the model servers, the gateway and the controller have
NetworkPolicies, model servers reach only the egress the values name, a rollout never reads a
SQLite log, and with a rollout the feedback token is on by default."""

from __future__ import annotations

import base64

import pytest
from helm_python import HelmError

from ingot.gateway.routing import parse

from .conftest import SCENARIOS
from .kube_checks import validate_any

RELOAD = "/tensorflow.serving.ModelService/HandleReloadConfigRequest"
CLIENT_METHODS = {("tensorflow.serving.PredictionService", "Predict"),
                  ("tensorflow.serving.PredictionService", "Classify"),
                  ("tensorflow.serving.PredictionService", "Regress"),
                  ("tensorflow.serving.PredictionService", "GetModelMetadata"),
                  ("tensorflow.serving.ModelService", "GetModelStatus")}
ROLLOUT = {"champion": {"version": 3}, "challenger": {"enabled": True, "version": 4},
           "traffic": {"mode": "ingot", "weights": {"champion": 90, "challenger": 10}},
           "gateway": {"logDatabase": {"existingSecret": "ingot-registry"}},
           "rollout": {"enabled": True, "database": {"secretName": "ingot-registry"}}}


def test_the_grpc_route_forwards_only_the_client_methods(canary_gateway):
    route = canary_gateway.get("GRPCRoute", "ingot")["spec"]
    for rule in route["rules"]:
        methods = {(m["method"]["service"], m["method"]["method"]) for m in rule["matches"]}
        assert methods == CLIENT_METHODS, rule
        assert all(m["method"]["type"] == "Exact" for m in rule["matches"])


def test_istio_routes_only_the_client_methods_and_denies_model_reloads(canary_istio):
    spec = canary_istio.get("VirtualService", "ingot")["spec"]
    for rule in spec["http"]:
        for match in rule["match"]:
            if match["port"] == 8500:
                assert match["uri"]["exact"] != RELOAD
                service, method = match["uri"]["exact"].strip("/").split("/")
                assert (service, method) in CLIENT_METHODS
    policy = canary_istio.get("AuthorizationPolicy", "ingot-deny-model-reload")
    assert policy["spec"]["action"] == "DENY"
    assert policy["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "model-server"
    assert policy["spec"]["rules"] == [{"to": [{"operation": {"paths": [RELOAD]}}]}]


def test_model_servers_admit_only_gateway_pods_not_whole_namespaces(minimal):
    clients = minimal.get("NetworkPolicy", "ingot")["spec"]["ingress"][0]["from"]
    assert all("podSelector" in peer for peer in clients), clients


def test_the_gateway_and_the_controller_have_network_policies(render_scenario):
    rendered = render_scenario("gateway-rollout")
    gateway = rendered.get("NetworkPolicy", "ingot-gateway")["spec"]
    assert gateway["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert gateway["policyTypes"] == ["Ingress", "Egress"]
    callers, monitoring = gateway["ingress"]
    assert all("podSelector" in peer for peer in callers["from"])
    assert monitoring["ports"] == [{"port": "http", "protocol": "TCP"}]
    servers, database, dns = gateway["egress"]
    assert servers["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "model-server"
    assert {p["port"] for p in servers["ports"]} == {8500, 8501}
    assert database["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert {p["port"] for p in dns["ports"]} == {53}

    controller = rendered.get("NetworkPolicy", "ingot-rollout")["spec"]
    assert controller["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "rollout-controller"
    [judge] = controller["ingress"]
    assert judge["ports"] == [{"port": "http", "protocol": "TCP"}]
    servers, database, api, dns = controller["egress"]
    assert {p["port"] for p in servers["ports"]} == {8501}
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert api["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}]
    for obj in rendered.objects:
        if obj["kind"] == "NetworkPolicy":
            validate_any(obj, "1.32")


def test_named_api_server_and_database_peers_narrow_the_controllers_egress(render_values):
    api = [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    db = [{"podSelector": {"matchLabels": {"app": "postgresql"}}}]
    rendered = render_values({**ROLLOUT, "networkPolicy": {"apiServer": {"peers": api}, "database": {"peers": db}}})
    _, database, to_api, _ = rendered.get("NetworkPolicy", "ingot-rollout")["spec"]["egress"]
    assert (to_api["to"], database["to"]) == (api, db)


def test_named_kfp_peers_let_the_controller_ask_whether_a_triggered_run_finished(render_values):
    kfp = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}},
            "podSelector": {"matchLabels": {"app": "ml-pipeline"}}}]
    rendered = render_values({**ROLLOUT, "networkPolicy": {"kfp": {"peers": kfp}}})
    egress = rendered.get("NetworkPolicy", "ingot-rollout")["spec"]["egress"]
    (to_kfp,) = [rule for rule in egress if rule.get("to") == kfp]
    assert to_kfp["ports"] == [{"port": 8888, "protocol": "TCP"}]
    validate_any(rendered.get("NetworkPolicy", "ingot-rollout"), "1.32")
    # Not named: no rule (the version waits for the monitor's next check), nothing opened wider.
    default = render_values(ROLLOUT).get("NetworkPolicy", "ingot-rollout")["spec"]["egress"]
    assert len(default) == len(egress) - 1 and all(8888 not in {p["port"] for p in r["ports"]} for r in default)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_model_server_egress_to_everywhere_or_the_metadata_server(render_scenario, scenario):
    for rule in render_scenario(scenario).get("NetworkPolicy", "ingot")["spec"].get("egress", []):
        ports = {p["port"] for p in rule["ports"]}
        assert "to" in rule or ports <= {53}, rule  # every rule names where it goes
        assert {"ipBlock": {"cidr": "169.254.169.254/32"}} not in rule.get("to", [])


def test_models_from_a_volume_get_dns_only(minimal):
    egress = minimal.get("NetworkPolicy", "ingot")["spec"]["egress"]
    assert [{p["port"] for p in rule["ports"]} for rule in egress] == [{53}]


@pytest.mark.parametrize(("values", "message"), [
    ({"storage": {"mode": "objectStore", "objectStore": {"uri": "gs://models",
                                                          "credentials": {"existingSecret": "key"}}}},
     "networkPolicy.egress.objectStore.peers is empty but storage.mode is objectStore"),
    ({"storage": {"mode": "objectStore", "objectStore": {"uri": "gs://models"}},
      "networkPolicy": {"egress": {"objectStore": {"peers": [{"ipBlock": {"cidr": "199.36.153.8/30"}}]}}}},
     "storage.objectStore.credentials.existingSecret is empty \\(ambient identity\\), which needs the cloud "
     "metadata server: set networkPolicy.egress.allowMetadataServer=true"),
    ({**ROLLOUT, "gateway": {"logDatabase": {"existingSecret": ""}}},
     "gateway.logDatabase.existingSecret is empty but rollout.enabled reads the inference log"),
])
def test_renders_that_must_fail_fail_naming_the_value(render_values, values, message):
    with pytest.raises(HelmError, match=message):
        render_values(values)


def test_named_object_store_endpoints_are_the_only_egress_beyond_dns(render_values):
    peers = [{"ipBlock": {"cidr": "199.36.153.8/30"}}]
    rendered = render_values({"storage": {"mode": "objectStore", "objectStore": {
        "uri": "gs://models", "credentials": {"existingSecret": "key"}}},
        "networkPolicy": {"egress": {"objectStore": {"peers": peers}}}})
    dns, store = rendered.get("NetworkPolicy", "ingot")["spec"]["egress"]
    assert store == {"to": peers, "ports": [{"port": 443, "protocol": "TCP"}]}


def test_with_a_rollout_the_feedback_token_is_generated_and_required(render_values):
    rendered = render_values(ROLLOUT)
    secret = rendered.get("Secret", "ingot-feedback-token")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(base64.b64decode(secret["data"]["token"])) >= 32
    table = parse(rendered.get("ConfigMap", "ingot-gateway-routes")["data"]["routes.yaml"])
    assert table.feedback_token_file == "/var/run/secrets/ingot/feedback/token"
    spec = rendered.get("Deployment", "ingot-gateway")["spec"]["template"]["spec"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "feedback-token"]
    assert volume["secret"]["secretName"] == "ingot-feedback-token"
    validate_any(secret, "1.32")
    assert "--require-feedback-token" in spec["containers"][0]["args"]
    # A given Secret wins, and no token is generated (the feedback-key Secret is another one).
    given = render_values({**ROLLOUT, "gateway": {**ROLLOUT["gateway"], "feedbackToken": {"existingSecret": "mine"}}})
    assert [s["metadata"]["name"] for s in given.of_kind("Secret")] == ["ingot-feedback-secret"]
    given_spec = given.get("Deployment", "ingot-gateway")["spec"]["template"]["spec"]
    [volume] = [v for v in given_spec["volumes"] if v["name"] == "feedback-token"]
    assert volume["secret"]["secretName"] == "mine"
    # Without a rollout, no token unless one is given (as before), and feedback keys are enough.
    plain = render_values({"traffic": {"mode": "ingot"}})
    assert [s["metadata"]["name"] for s in plain.of_kind("Secret")] == ["ingot-feedback-secret"]
    plain_args = plain.get("Deployment", "ingot-gateway")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--require-feedback-token" not in plain_args


def test_the_judge_binds_the_pod_address_with_a_socket_timeout(render_values):
    rendered = render_values(ROLLOUT)
    [container] = rendered.get("Deployment", "ingot-rollout")["spec"]["template"]["spec"]["containers"]
    assert "--host=$(POD_IP)" in container["args"] and "--judge-timeout=10" in container["args"]
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]
