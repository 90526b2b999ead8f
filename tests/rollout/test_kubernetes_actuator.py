"""The Kubernetes actuator against a loopback API (kmock): each traffic mode, model-config
versions on promotion, resourceVersion preconditions with 409 -> re-read, 404, 403, ownership."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml

from ingot.rollout.actuators import ActuationError
from ingot.rollout.kubernetes import KubernetesActuator
from ingot.serving.config import parse_model_server_config
from tests.rollout.kube_api import KubeAPI

NS, RELEASE = "ml", "digits"
OWNED = {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/part-of": "ingot"}
ROLLOUT = SimpleNamespace(model="digits", experiment="digits-v2-vs-v1-abc123", champion_version=1,
                          challenger_version=2)
CM = "v1/configmaps"
HTTPROUTES = "gateway.networking.k8s.io/v1/httproutes"
GRPCROUTES = "gateway.networking.k8s.io/v1/grpcroutes"
VIRTUALSERVICES = "networking.istio.io/v1/virtualservices"


def model_config(version: int) -> str:
    return ('model_config_list { config { name: "digits" base_path: "/models/digits" model_platform: "tensorflow" '
            f'model_version_policy {{ specific {{ versions: {version} }} }} '
            f'version_labels {{ key: "stable" value: {version} }} }} }}')


def target(mode: str, **extra) -> dict:
    return {"actuator": "kubernetes", "mode": mode, "namespace": NS, "release": RELEASE, "drain_s": 0,
            "champion": {"rest": "http://digits-champion:8501", "grpc": "digits-champion:8500"},
            "challenger": {"rest": "http://digits-challenger:8501", "grpc": "digits-challenger:8500"},
            "model_configmaps": {"champion": "digits-champion-model-config",
                                 "challenger": "digits-challenger-model-config"}, **extra}


@pytest.fixture
def api():
    with KubeAPI() as running:
        for variant, version in (("champion", 1), ("challenger", 1)):
            running.put(CM, NS, f"digits-{variant}-model-config",
                        {"metadata": {"labels": OWNED}, "data": {"models.config": model_config(version)}})
        yield running


def weighted_rule(champion_weight: int, challenger_weight: int) -> dict:
    return {"matches": [{"path": {"type": "PathPrefix", "value": "/v1/models"}}],
            "backendRefs": [{"name": "digits-champion", "port": 8501, "weight": champion_weight},
                            {"name": "digits-challenger", "port": 8501, "weight": challenger_weight}]}


PIN_RULE = {"matches": [{"headers": [{"name": "x-ingot-variant", "value": "challenger"}]}],
            "backendRefs": [{"name": "digits-challenger", "port": 8501}]}


def test_mode_ingot_writes_the_whole_routing_table_with_a_precondition(api):
    api.put(CM, NS, "digits-routes", {"metadata": {"labels": OWNED}, "data": {"routes.yaml": ""}})
    actuator = KubernetesActuator(api.client, target("ingot", routes_configmap="digits-routes"))
    actuator.set_weight(ROLLOUT, 10)
    table = yaml.safe_load(api.get(CM, NS, "digits-routes")["data"]["routes.yaml"])
    assert table["weights"] == {"challenger": 10} and table["experiment"] == ROLLOUT.experiment
    assert table["upstreams"]["champion"] == {"rest": "http://digits-champion:8501", "grpc": "digits-champion:8500",
                                                 "version": 1}
    assert api.patches()[-1]["metadata"]["resourceVersion"] == "1"


def test_a_conflicting_writer_means_re_read_and_retry(api):
    api.put(CM, NS, "digits-routes", {"metadata": {"labels": OWNED}, "data": {"routes.yaml": ""}})
    api.emulator.races[("configmaps", "digits-routes")] = 2
    actuator = KubernetesActuator(api.client, target("ingot", routes_configmap="digits-routes"))
    actuator.set_weight(ROLLOUT, 0)
    path = f"/api/v1/namespaces/{NS}/configmaps/digits-routes"
    assert api.requests() == [("GET", path), ("PATCH", path)] * 3
    assert yaml.safe_load(api.get(CM, NS, "digits-routes")["data"]["routes.yaml"])["weights"] == {"challenger": 0}
    api.emulator.races[("configmaps", "digits-routes")] = 10
    with pytest.raises(ActuationError, match="kept changing"):
        actuator.set_weight(ROLLOUT, 50)


def test_mode_gateway_api_reweights_only_the_split_rule_of_both_routes(api):
    for resource, name in ((HTTPROUTES, "digits"), (GRPCROUTES, "digits-grpc")):
        api.put(resource, NS, name, {"metadata": {"labels": OWNED},
                                     "spec": {"rules": [PIN_RULE, weighted_rule(100, 0)]}})
    actuator = KubernetesActuator(api.client, target("gatewayAPI", httproute="digits", grpcroute="digits-grpc",
                                                     champion_service="digits-champion",
                                                     challenger_service="digits-challenger"))
    actuator.set_weight(ROLLOUT, 10)
    for resource, name in ((HTTPROUTES, "digits"), (GRPCROUTES, "digits-grpc")):
        rules = api.get(resource, NS, name)["spec"]["rules"]
        assert rules == [PIN_RULE, weighted_rule(90, 10)]
    actuator.set_weight(ROLLOUT, 0)
    assert api.get(HTTPROUTES, NS, "digits")["spec"]["rules"][1] == weighted_rule(100, 0)


def test_mode_istio_reweights_the_split_routes(api):
    champion, challenger = "digits-champion.ml.svc.cluster.local", "digits-challenger.ml.svc.cluster.local"
    pin = {"name": "pin-challenger-http", "route": [{"destination": {"host": challenger, "port": {"number": 8501}}}]}
    split = {"name": "split-http", "match": [{"port": 8501}],
             "route": [{"destination": {"host": champion, "port": {"number": 8501}}, "weight": 100}]}
    api.put(VIRTUALSERVICES, NS, "digits", {"metadata": {"labels": OWNED}, "spec": {"http": [pin, split]}})
    actuator = KubernetesActuator(api.client, target("istio", virtualservice="digits", champion_host=champion,
                                                     challenger_host=challenger))
    actuator.set_weight(ROLLOUT, 50)
    http = api.get(VIRTUALSERVICES, NS, "digits")["spec"]["http"]
    assert http[0] == pin
    assert http[1]["route"] == [
        {"destination": {"host": champion, "port": {"number": 8501}}, "weight": 50},
        {"destination": {"host": challenger, "port": {"number": 8501}}, "weight": 50},
    ]
    actuator.set_weight(ROLLOUT, 0)
    assert api.get(VIRTUALSERVICES, NS, "digits")["spec"]["http"][1] == split


def versions_in(text: str) -> tuple[list[int], dict[str, int]]:
    entry = parse_model_server_config(text).model_config_list.config[0]
    return list(entry.model_version_policy.specific.versions), dict(entry.version_labels)


def test_prepare_and_promotion_move_versions_in_the_model_config_configmaps(api, monkeypatch):
    api.put(CM, NS, "digits-routes", {"metadata": {"labels": OWNED}, "data": {"routes.yaml": ""}})
    actuator = KubernetesActuator(api.client, target("ingot", routes_configmap="digits-routes"))
    actuator.prepare(ROLLOUT)
    assert versions_in(api.get(CM, NS, "digits-challenger-model-config")["data"]["models.config"]) == ([2], {"stable": 2})
    loaded: list[int] = []
    monkeypatch.setattr(actuator, "available", lambda rollout, arm, version: loaded.append(version) or len(loaded) > 2)
    actuator.set_weight(ROLLOUT, 50)
    actuator.promote(ROLLOUT)
    history = [versions_in(p["data"]["models.config"]) for p in api.patches() if "models.config" in p.get("data", {})]
    assert history == [([2], {"stable": 2}),            # prepare: the challenger server loads v2
                       ([1, 2], {"stable": 1}),         # champion servers load v2 beside v1
                       ([1, 2], {"stable": 2}),         # once AVAILABLE the label moves
                       ([2], {"stable": 2})]            # then v1 unloads
    assert loaded == [2, 2, 2]
    table = yaml.safe_load(api.get(CM, NS, "digits-routes")["data"]["routes.yaml"])
    assert table["weights"] == {"challenger": 0} and table["upstreams"]["champion"]["version"] == 2


def test_missing_forbidden_and_foreign_objects_are_clear_errors(api):
    actuator = KubernetesActuator(api.client, target("ingot", routes_configmap="digits-routes"))
    with pytest.raises(ActuationError, match="digits-routes not found"):
        actuator.set_weight(ROLLOUT, 0)
    api.put(CM, NS, "digits-routes", {"metadata": {"labels": OWNED}, "data": {"routes.yaml": ""}})
    api.emulator.forbidden.add(("configmaps", "digits-routes"))
    with pytest.raises(ActuationError, match="forbidden .* ServiceAccount lacks get/patch"):
        actuator.set_weight(ROLLOUT, 0)
    api.emulator.forbidden.clear()
    api.put(CM, NS, "digits-routes", {"metadata": {"labels": {"app.kubernetes.io/instance": "other"}},
                                      "data": {"routes.yaml": "keep"}})
    before = len(api.patches())
    with pytest.raises(ActuationError, match="not labelled as owned by release digits"):
        actuator.set_weight(ROLLOUT, 0)
    assert len(api.patches()) == before and api.get(CM, NS, "digits-routes")["data"]["routes.yaml"] == "keep"


def test_the_controller_drives_a_rollback_and_a_promotion_through_the_kubernetes_api(api, tmp_path, monkeypatch):
    from ingot.registry import Registry, Stage
    from ingot.rollout.analysis import Policy
    from ingot.rollout.controller import Controller
    from tests.registry.helpers import publish
    from tests.rollout.support import log_rows

    monkeypatch.setattr("ingot.rollout.kubernetes.version_available", lambda rest, model, version: True)
    api.put(CM, NS, "digits-routes", {"metadata": {"labels": OWNED}, "data": {"routes.yaml": ""}})
    with Registry.from_url(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        for version in (1, 2, 3):
            publish(registry, "digits", version)
        controller = Controller(registry, actuator_factory=lambda t: KubernetesActuator(api.client, t))
        ingot_target = target("ingot", routes_configmap="digits-routes")

        def routes() -> dict:
            return yaml.safe_load(api.get(CM, NS, "digits-routes")["data"]["routes.yaml"])

        worse = controller.start("digits", 2, steps=[50], policy=Policy(), target=ingot_target)
        worse = controller.reconcile(worse.id)
        assert worse.state == "analyzing" and routes()["weights"] == {"challenger": 50}
        log_rows(registry.engine, worse.experiment, "champion", requests=2000, labelled=2000, correct=1440)
        log_rows(registry.engine, worse.experiment, "challenger", requests=2000, labelled=2000, correct=1340)
        assert controller.reconcile(worse.id).state == "rolled_back"
        assert routes()["weights"] == {"challenger": 0}
        assert registry.get_version("digits", 2).stage is Stage.REJECTED

        better = controller.start("digits", 3, steps=[50], policy=Policy(), target=ingot_target)
        better = controller.reconcile(better.id)
        log_rows(registry.engine, better.experiment, "champion", requests=1000, labelled=1000, correct=600)
        log_rows(registry.engine, better.experiment, "challenger", requests=1000, labelled=1000, correct=800)
        assert controller.reconcile(better.id).state == "promoted"
        assert routes()["upstreams"]["champion"]["version"] == 3 and routes()["weights"] == {"challenger": 0}
        champion_config = api.get(CM, NS, "digits-champion-model-config")["data"]["models.config"]
        assert versions_in(champion_config) == ([3], {"stable": 3})
        assert registry.champion("digits").version == 3


def test_a_resumed_promotion_never_moves_the_champion_label_back(api, monkeypatch):
    """Killed after the label moved to v2: the rerun goes forward only."""
    api.put(CM, NS, "digits-routes", {"metadata": {"labels": OWNED}, "data": {"routes.yaml": ""}})
    api.put(CM, NS, "digits-champion-model-config", {"metadata": {"labels": OWNED}, "data": {"models.config": (
        'model_config_list { config { name: "digits" base_path: "/models/digits" model_platform: "tensorflow" '
        'model_version_policy { specific { versions: 1 versions: 2 } } version_labels { key: "stable" value: 2 } } }')}})
    actuator = KubernetesActuator(api.client, target("ingot", routes_configmap="digits-routes"))
    monkeypatch.setattr(actuator, "available", lambda rollout, arm, version: True)
    actuator.promote(ROLLOUT)
    history = [versions_in(p["data"]["models.config"]) for p in api.patches() if "models.config" in p.get("data", {})]
    assert history == [([1, 2], {"stable": 2}), ([2], {"stable": 2})]
