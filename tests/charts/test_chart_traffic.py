"""Traffic split: weights reach the Gateway API routes and the Istio VirtualService; pins and mirror."""

from __future__ import annotations

import pytest
from helm_python import HelmError

FQDN = "{}.serving.svc.cluster.local"


def _weights(backend_refs):
    return {ref["name"]: (ref["port"], ref.get("weight")) for ref in backend_refs}


def test_http_route_splits_rest_by_weight(canary_gateway):
    route = canary_gateway.get("HTTPRoute", "ingot")["spec"]
    assert route["parentRefs"] == [{"name": "ingot", "namespace": "gateway-system", "sectionName": "http"}]
    assert route["hostnames"] == ["models.example.com"]
    default = route["rules"][-1]
    assert default["matches"] == [{"path": {"type": "PathPrefix", "value": "/v1/models"}}]
    assert _weights(default["backendRefs"]) == {"ingot-champion": (8501, 90), "ingot-challenger": (8501, 10)}


def test_grpc_route_splits_prediction_and_model_service_by_weight(canary_gateway):
    route = canary_gateway.get("GRPCRoute", "ingot")["spec"]
    default = route["rules"][-1]
    assert {m["method"]["service"] for m in default["matches"]} == {
        "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"}
    assert _weights(default["backendRefs"]) == {"ingot-champion": (8500, 90), "ingot-challenger": (8500, 10)}


@pytest.mark.parametrize("kind", ["HTTPRoute", "GRPCRoute"])
def test_gateway_routes_pin_a_caller_by_header(canary_gateway, kind):
    rules = canary_gateway.get(kind, "ingot")["spec"]["rules"]
    pins = rules[:-1]
    assert len(pins) == 2
    default_matches = rules[-1]["matches"]
    for rule, variant in zip(pins, ["champion", "challenger"]):
        assert [ref["name"] for ref in rule["backendRefs"]] == [f"ingot-{variant}"]
        for match in rule["matches"]:
            assert match["headers"] == [{"type": "Exact", "name": "x-ingot-variant", "value": variant}]
            # Same path/method as the weighted rule plus a header, so the pinned rule ranks higher.
            assert {k: v for k, v in match.items() if k != "headers"} in default_matches


def test_gateway_services_speak_h2c_for_grpc(canary_gateway, canary_istio):
    grpc = next(p for p in canary_gateway.get("Service", "ingot-challenger")["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["appProtocol"] == "kubernetes.io/h2c"
    # Istio detects the protocol from the port name and gets no appProtocol.
    grpc = next(p for p in canary_istio.get("Service", "ingot-challenger")["spec"]["ports"] if p["name"] == "grpc")
    assert "appProtocol" not in grpc


CLIENT_METHODS = ("tensorflow.serving.PredictionService/Predict", "tensorflow.serving.PredictionService/Classify",
                  "tensorflow.serving.PredictionService/Regress",
                  "tensorflow.serving.PredictionService/GetModelMetadata",
                  "tensorflow.serving.ModelService/GetModelStatus")


def test_virtual_service_weights_pin_and_mirror(canary_istio):
    spec = canary_istio.get("VirtualService", "ingot")["spec"]
    assert spec["hosts"] == [FQDN.format("ingot")]
    assert spec["gateways"] == ["mesh"]
    rules = {r["name"]: r for r in spec["http"]}
    for port_name, port in (("grpc", 8500), ("http", 8501)):
        split = rules[f"split-{port_name}"]
        # Issue 16: gRPC only for the methods clients need (never HandleReloadConfigRequest).
        assert split["match"] == ([{"port": port}] if port_name == "http" else
                                  [{"port": port, "uri": {"exact": f"/{method}"}} for method in CLIENT_METHODS])
        assert {(d["destination"]["host"], d["destination"]["port"]["number"], d["weight"]) for d in split["route"]} == {
            (FQDN.format("ingot-champion"), port, 80), (FQDN.format("ingot-challenger"), port, 20)}
        assert split["mirror"] == {"host": FQDN.format("ingot-challenger"), "port": {"number": port}}
        assert split["mirrorPercentage"] == {"value": 100}
        for variant in ("champion", "challenger"):
            pin = rules[f"pin-{variant}-{port_name}"]
            header = {"x-ingot-variant": {"exact": variant}}
            assert pin["match"] == ([{"port": port, "headers": header}] if port_name == "http" else
                                    [{"port": port, "uri": {"exact": f"/{method}"}, "headers": header}
                                     for method in CLIENT_METHODS])
            assert pin["route"] == [{"destination": {"host": FQDN.format(f"ingot-{variant}"), "port": {"number": port}}}]
    # Istio takes the first matching rule: pins must come before the split.
    names = [r["name"] for r in spec["http"]]
    assert names.index("pin-challenger-http") < names.index("split-http")
    assert names.index("pin-champion-grpc") < names.index("split-grpc")


def test_rollback_weight_zero_sends_nothing_to_the_challenger(render_values):
    values = {"champion": {"version": 3}, "challenger": {"enabled": True, "version": 4},
              "traffic": {"mode": "istio", "weights": {"champion": 100, "challenger": 0}}}
    split = next(r for r in render_values(values).get("VirtualService", "ingot")["spec"]["http"] if r["name"] == "split-http")
    assert [d["destination"]["host"] for d in split["route"]] == [FQDN.format("ingot-champion")]


def test_no_split_mode_renders_plain_services(minimal):
    assert not {"HTTPRoute", "GRPCRoute", "VirtualService"} & minimal.kinds()


def test_stable_service_reaches_the_champion_only(canary_gateway):
    stable = canary_gateway.get("Service", "ingot")["spec"]
    assert stable["selector"]["ingot.dev/variant"] == "champion"
    assert {p["name"]: p["port"] for p in stable["ports"]} == {"grpc": 8500, "http": 8501}
    for variant in ("champion", "challenger"):
        svc = canary_gateway.get("Service", f"ingot-{variant}")["spec"]
        assert svc["selector"]["ingot.dev/variant"] == variant


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"champion": 70, "challenger": 20}, "traffic.weights must sum to 100, got champion 70 \\+ challenger 20 = 90"),
        ({"champion": 90, "challenger": 20}, "traffic.weights must sum to 100, got champion 90 \\+ challenger 20 = 110"),
    ],
)
def test_weights_not_summing_to_100_are_refused(render_values, weights, message):
    values = {"challenger": {"enabled": True, "version": 2}, "traffic": {"mode": "istio", "weights": weights}}
    with pytest.raises(HelmError, match=message):
        render_values(values)


def test_challenger_weight_needs_an_enabled_challenger(render_values):
    with pytest.raises(HelmError, match="traffic.weights.challenger is 10 but challenger.enabled is false"):
        render_values({"traffic": {"weights": {"champion": 90, "challenger": 10}}})


def test_gateway_mode_needs_parent_refs(render_values):
    with pytest.raises(HelmError, match="traffic.gatewayAPI.parentRefs is empty"):
        render_values({"traffic": {"mode": "gatewayAPI"}})


def test_mirror_needs_a_challenger(render_values):
    with pytest.raises(HelmError, match="mirrors to the challenger, but challenger.enabled is false"):
        render_values({"traffic": {"mode": "istio", "istio": {"mirror": {"enabled": True}}}})
