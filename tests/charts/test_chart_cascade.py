"""<variant>.cascade: each arm's confidence cascade renders into the gateway's routing table (read by
the gateway's own loader) and the rollout controller's target; a small model the chart runs gets its
own `ingot serve` Deployment (flags checked by `ingot serve`'s own parser), model config, Service,
HPA and PDB, wired to the table and reachable by the gateway only; an external one gets the
gateway's egress to its ports; bad combinations fail naming the key."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import yaml
from helm_python import HelmError

from ingot.gateway.routing import Upstream, parse
from ingot.rollout.kubernetes import KubernetesActuator
from tests.rollout.kube_api import KubeAPI

from .chart_support import NAMESPACE, ingot_serve_options, scenario_values
from .kube_checks import K8S_VERSIONS, restricted_violations, validate_any
from .test_chart_rollout import allowed, controller_target, render_release, used, with_rollout
from .tf_serving_text import parse_model_server_config

FQDN = "serving.svc.cluster.local"
EXTERNAL = {"server": {"enabled": False},
            "external": {"rest": "https://digits-small.models.example.com", "grpc": "digits-small.models:9000"}}


@pytest.fixture(scope="module")
def cascade(render_scenario):
    return render_scenario("gateway-cascade")


def _table(rendered):
    return parse(rendered.get("ConfigMap", "ingot-gateway-routes")["data"]["routes.yaml"])


def _pod_labels(rendered, name):
    return rendered.get("Deployment", name)["spec"]["template"]["metadata"]["labels"]


def _selects(selector, labels):
    return all(labels.get(key) == value for key, value in selector.items())


def _args(rendered, name):
    return rendered.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]["args"]


def _values(**arms):
    values = scenario_values("gateway-cascade")
    for arm, cascade in arms.items():
        values[arm]["cascade"] = cascade
    return values


def test_no_cascade_and_no_small_server_by_default(minimal, render_scenario):
    gateway = render_scenario("gateway")
    for rendered in (minimal, gateway):
        assert not [o for o in rendered.objects if "small" in o["metadata"]["name"]]
    assert _table(gateway).cascades == {}
    assert "cascade" not in controller_target(render_scenario("gateway-rollout"))["champion"]


def test_the_routing_table_gives_each_arm_its_cascade_on_its_small_service(cascade):
    table = _table(cascade)
    assert set(table.cascades) == {"champion", "challenger"}
    champion, challenger = table.cascades["champion"], table.cascades["challenger"]
    assert champion.small == Upstream(rest=f"http://ingot-champion-small.{FQDN}:8501",
                                      grpc=f"ingot-champion-small.{FQDN}:8500", version=3)
    assert challenger.small == Upstream(rest=f"http://ingot-challenger-small.{FQDN}:8501",
                                        grpc=f"ingot-challenger-small.{FQDN}:8500", version=4)
    assert (champion.threshold, challenger.threshold) == (0.93, 0.91)
    # The arms themselves still go to their own (full) servers.
    assert (table.champion.rest, table.champion.version) == (f"http://ingot-champion.{FQDN}:8501", 3)
    # Each small upstream is a Service of the release on the ports the table names.
    for arm in ("champion", "challenger"):
        service = cascade.get("Service", f"ingot-{arm}-small")
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"grpc": 8500, "http": 8501}


def test_each_small_server_serves_its_arms_int8_model_from_its_own_objects(cascade):
    for arm, version in (("champion", 3), ("challenger", 4)):
        name = f"ingot-{arm}-small"
        deployment = cascade.get("Deployment", name)
        pod = deployment["spec"]["template"]
        assert restricted_violations(pod["metadata"], pod["spec"]) == []
        [container] = pod["spec"]["containers"]
        # `ingot serve`, not TF Serving: only Ingot's TFLite path keeps serving_bytes, probabilities and class names.
        assert (container["image"], container["command"]) == ("ghcr.io/ingot/ingot:0.1.0", ["ingot", "serve"])
        assert {"--host=0.0.0.0", "--prefer_tflite_model=true", "--model_config_file=/etc/ingot/model/models.config"} \
            <= set(container["args"])
        assert container["readinessProbe"]["httpGet"] == container["startupProbe"]["httpGet"] == {
            "path": "/readyz", "port": "http"}
        assert pod["metadata"]["annotations"]["ingot.dev/model-version"] == str(version)
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "model-config")
        assert volume["configMap"]["name"] == f"{name}-model-config"
        (config,) = parse_model_server_config(
            cascade.get("ConfigMap", f"{name}-model-config")["data"]["models.config"]).model_config_list.config
        assert (config.name, list(config.model_version_policy.specific.versions)) == ("ingot", [version])
        assert dict(config.version_labels) == {}  # callers never reach it by label
        assert cascade.get("HorizontalPodAutoscaler", name)["spec"]["scaleTargetRef"]["name"] == name
        assert "replicas" not in deployment["spec"]
        pdb = cascade.get("PodDisruptionBudget", name)["spec"]
        labels = _pod_labels(cascade, name)
        assert _selects(pdb["selector"]["matchLabels"], labels)
        assert _selects(cascade.get("Service", name)["spec"]["selector"], labels)
        assert _selects(deployment["spec"]["selector"]["matchLabels"], labels)
    assert [a for a in _args(cascade, "ingot-challenger-small") if "tflite" in a] == [
        "--prefer_tflite_model=true", "--num_tflite_pools=2", "--num_tflite_interpreters_per_pool=2"]
    hpa = cascade.get("HorizontalPodAutoscaler", "ingot-challenger-small")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 3)
    # The full servers are unchanged: float SavedModels, no TFLite flags.
    assert not [a for a in _args(cascade, "ingot-champion") if "tflite" in a]


def test_no_selector_of_an_arm_picks_its_small_pods_or_the_other_way_round(cascade):
    small, full = _pod_labels(cascade, "ingot-champion-small"), _pod_labels(cascade, "ingot-champion")
    assert small["ingot.dev/variant"] == "champion-small"
    arm_selectors = [cascade.get("Service", "ingot")["spec"]["selector"],  # the stable Service
                     cascade.get("Service", "ingot-champion")["spec"]["selector"],
                     cascade.get("Deployment", "ingot-champion")["spec"]["selector"]["matchLabels"],
                     cascade.get("PodDisruptionBudget", "ingot-champion")["spec"]["selector"]["matchLabels"]]
    assert [s for s in arm_selectors if _selects(s, small)] == []
    assert not _selects(cascade.get("Service", "ingot-champion-small")["spec"]["selector"], full)
    assert not _selects(cascade.get("Service", "ingot-challenger-small")["spec"]["selector"], small)


def test_only_the_gateway_reaches_the_small_servers_and_it_may(cascade):
    gateway_pods = _pod_labels(cascade, "ingot-gateway")
    servers = cascade.get("NetworkPolicy", "ingot")["spec"]
    for arm in ("champion", "challenger"):
        small = _pod_labels(cascade, f"ingot-{arm}-small")
        assert _selects(servers["podSelector"]["matchLabels"], small)  # the model servers' policy covers them
    clients = servers["ingress"][0]
    assert [p for p in clients["from"] if _selects(p["podSelector"]["matchLabels"], gateway_pods)]
    assert all("namespaceSelector" not in p for p in clients["from"])
    egress = cascade.get("NetworkPolicy", "ingot-gateway")["spec"]["egress"]
    small = _pod_labels(cascade, "ingot-champion-small")
    to_small = [r for r in egress if any(_selects(p.get("podSelector", {}).get("matchLabels", {"x": "y"}), small)
                                         for p in r.get("to", []))]
    assert to_small and {p["port"] for p in to_small[0]["ports"]} == {8500, 8501}


def test_helm_test_checks_the_small_servers_too(cascade):
    script = cascade.get("Pod", "ingot-test-model-status")["spec"]["containers"][0]["args"][0]
    assert "for host in ingot-champion ingot-champion-small ingot-challenger ingot-challenger-small ;" in script


def test_notes_name_each_cascade(cascade):
    assert "cascade: small version 3 on Deployment ingot-champion-small (int8 model.tflite) answers at top-1 >= 0.93" \
        in cascade.notes
    assert "x-ingot-answered-by: small|full" in cascade.notes


def test_an_external_small_model_gets_the_gateways_egress_to_its_ports_only(render_values):
    values = _values(challenger={"enabled": True, "threshold": 0.9, "small": EXTERNAL})
    values["networkPolicy"] = {"cascade": {"peers": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}}
    rendered = render_values(values)
    assert "ingot-challenger-small" not in {o["metadata"]["name"] for o in rendered.objects}
    assert rendered.get("Deployment", "ingot-champion-small")  # the champion's still runs in the chart
    small = _table(rendered).cascades["challenger"].small
    assert small == Upstream(rest="https://digits-small.models.example.com", grpc="digits-small.models:9000", version=4)
    egress = rendered.get("NetworkPolicy", "ingot-gateway")["spec"]["egress"]
    (rule,) = [r for r in egress if r.get("to") == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]]
    assert rule["ports"] == [{"port": 443, "protocol": "TCP"}, {"port": 9000, "protocol": "TCP"}]
    for obj in rendered.objects:
        for version in K8S_VERSIONS:
            validate_any(obj, version)
    # Without peers: any address, on those ports only.
    values["networkPolicy"] = {}
    egress = render_values(values).get("NetworkPolicy", "ingot-gateway")["spec"]["egress"]
    assert {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 9000, "protocol": "TCP"}]} in egress


def test_a_smaller_architectures_version_is_served_as_a_savedmodel(render_values):
    small = {"version": 2, "server": {"tflite": {"preferTfliteModel": False}}}
    rendered = render_values(_values(champion={"enabled": True, "threshold": 0.8, "small": small}))
    assert not [a for a in _args(rendered, "ingot-champion-small") if "tflite" in a]
    (config,) = parse_model_server_config(
        rendered.get("ConfigMap", "ingot-champion-small-model-config")["data"]["models.config"]).model_config_list.config
    assert list(config.model_version_policy.specific.versions) == [2]
    assert _table(rendered).cascades["champion"].small.version == 2


def test_the_small_server_stays_on_cpu_when_the_variants_use_gpus(render_values):
    values = _values()
    values["gpu"] = {"enabled": True}
    rendered = render_values(values)
    full = rendered.get("Deployment", "ingot-champion")["spec"]["template"]["spec"]
    small = rendered.get("Deployment", "ingot-champion-small")["spec"]["template"]["spec"]
    assert full["containers"][0]["image"].endswith("-gpu") and "nvidia.com/gpu" in full["containers"][0]["resources"]["limits"]
    assert small["containers"][0]["image"] == "ghcr.io/ingot/ingot:0.1.0"
    assert "nvidia.com/gpu" not in small["containers"][0]["resources"]["limits"]
    assert not small.get("tolerations") and not small.get("nodeSelector")


def test_the_rollout_target_carries_each_cascade_and_the_controllers_tables_keep_them(chart, monkeypatch):
    values = with_rollout("gateway-cascade")
    rendered = render_release(chart, values)
    target = controller_target(rendered)
    rendered_table = yaml.safe_load(rendered.get("ConfigMap", target["routes_configmap"])["data"]["routes.yaml"])
    for arm in ("champion", "challenger"):
        assert target[arm]["cascade"] == rendered_table["upstreams"][arm]["cascade"]
    # Both small servers serve their arm's own version (its int8 model): they move with the arms.
    assert target["model_configmaps"] == {arm: f"ingot-{arm}-model-config" for arm in
                                          ("champion", "challenger", "champion-small", "challenger-small")}
    with KubeAPI() as api:
        routes = rendered.get("ConfigMap", target["routes_configmap"])
        api.put("v1/configmaps", NAMESPACE, routes["metadata"]["name"], routes)
        for server in ("champion", "challenger", "champion-small", "challenger-small"):
            config = rendered.get("ConfigMap", f"ingot-{server}-model-config")
            api.put("v1/configmaps", NAMESPACE, config["metadata"]["name"], config)

        def served(server):
            (config,) = parse_model_server_config(api.get("v1/configmaps", NAMESPACE, f"ingot-{server}-model-config")[
                "data"]["models.config"]).model_config_list.config
            return list(config.model_version_policy.specific.versions), dict(config.version_labels)

        def written():  # what the gateway would load
            return parse(api.get("v1/configmaps", NAMESPACE, target["routes_configmap"])["data"]["routes.yaml"])

        actuator = KubernetesActuator(api.client, {**target, "drain_s": 0})
        monkeypatch.setattr(actuator, "available", lambda rollout, arm, version: True)
        rollout = SimpleNamespace(model="ingot", experiment="ingot-v4-vs-v3-abc123", champion_version=3,
                                  challenger_version=4)
        actuator.prepare(rollout)
        actuator.set_weight(rollout, 50)
        table = written()
        assert table.challenger_weight == 50
        assert table.cascades == _table(rendered).cascades
        actuator.promote(rollout)
        promoted = written()
        # The promoted champion is the challenger's whole arm: its small model is version 4's int8, not 3's.
        assert promoted.champion.version == 4
        assert promoted.cascades == {"champion": _table(rendered).cascades["challenger"]}
        # The champion's small server moved with the champion (no labels: callers never reach it by one).
        assert served("champion") == ([4], {"stable": 4}) and served("champion-small") == ([4], {})
        # The next rollout starts consistent: each arm's cascade names the version its small server serves.
        following = SimpleNamespace(model="ingot", experiment="ingot-v5-vs-v4-def456", champion_version=4,
                                    challenger_version=5)
        actuator.prepare(following)
        assert served("challenger-small") == ([5], {})
        actuator.set_weight(following, 10)
        table = written()
        assert (table.cascades["champion"].small.rest, table.cascades["champion"].small.version) == (
            f"http://ingot-champion-small.{FQDN}:8501", 4)
        assert (table.cascades["challenger"].small.rest, table.cascades["challenger"].small.version) == (
            f"http://ingot-challenger-small.{FQDN}:8501", 5)
        assert used(api) <= allowed(rendered)  # cascades need no more of the API than the Role grants


def test_a_small_server_waits_for_its_version_before_its_arm_counts_as_available(chart, monkeypatch):
    target = controller_target(render_release(chart, with_rollout("gateway-cascade")))
    asked = []

    def version_available(rest, model, version, timeout_s=2.0):
        asked.append(rest)
        return "small" not in rest

    monkeypatch.setattr("ingot.rollout.kubernetes.version_available", version_available)
    with KubeAPI() as api:
        actuator = KubernetesActuator(api.client, target)
        rollout = SimpleNamespace(model="ingot")
        assert not actuator.available(rollout, "champion", 4)
    assert asked == [f"http://ingot-champion.{FQDN}:8501", f"http://ingot-champion-small.{FQDN}:8501"]


def test_a_pinned_small_version_never_moves(chart):
    values = _values(champion={"enabled": True, "threshold": 0.8,
                               "small": {"version": 2, "server": {"tflite": {"preferTfliteModel": False}}}})
    values["rollout"] = with_rollout("gateway-cascade")["rollout"]
    rendered = render_release(chart, values)
    target = controller_target(rendered)
    assert "champion-small" not in target["model_configmaps"] and "cascade_follows_version" not in target["champion"]
    assert target["challenger"]["cascade_follows_version"] is True


def test_helm_upgrade_with_a_rollout_keeps_the_small_model_configs_the_controller_moves(chart):
    """A small server on its arm's own version moves with the arm, so its config is the controller's
    (kept live like the arm's); one pinned to another version is values-driven: always rendered."""
    values = with_rollout("gateway-cascade")
    install, upgrade = render_release(chart, values), render_release(chart, values, upgrade=True)
    for server in ("champion", "champion-small", "challenger-small"):
        with pytest.raises(KeyError):
            upgrade.get("ConfigMap", f"ingot-{server}-model-config")  # the controller's, kept live
        assert install.get("ConfigMap", f"ingot-{server}-model-config")["metadata"]["annotations"][
            "helm.sh/resource-policy"] == "keep"
    values["champion"]["cascade"]["small"] = {"version": 2, "server": {"tflite": {"preferTfliteModel": False}}}
    install, upgrade = render_release(chart, values), render_release(chart, values, upgrade=True)
    for rendered in (install, upgrade):
        config = rendered.get("ConfigMap", "ingot-champion-small-model-config")
        assert "annotations" not in config["metadata"]
    allowed_names = {n for rule in install.get("Role", "ingot-rollout")["rules"] for n in rule.get("resourceNames", [])}
    assert "ingot-champion-small-model-config" not in allowed_names
    assert "ingot-challenger-small-model-config" in allowed_names


@pytest.mark.parametrize(("change", "message"), [
    ({"traffic": {"mode": "istio"}},
     'champion.cascade.enabled needs traffic.mode ingot (got "istio"): only Ingot\'s gateway runs a confidence cascade'),
    ({"champion": {"cascade": {"enabled": True, "threshold": None}}},
     "champion.cascade.enabled needs champion.cascade.threshold: the small model's top-1 probability"),
    ({"champion": {"cascade": {"enabled": True, "threshold": 0.9, "small": {"server": {"enabled": False}}}}},
     "champion.cascade.enabled needs a small model: champion.cascade.small.server.enabled=true"),
    ({"champion": {"cascade": {"enabled": True, "threshold": 0.9,
                               "small": {"server": {"enabled": False}, "external": {"rest": "http://small:8501"}}}}},
     "champion.cascade.enabled needs a small model"),
    ({"champion": {"cascade": {"enabled": True, "threshold": 0.9, "small": {"external": EXTERNAL["external"]}}}},
     "champion.cascade.small names both a server (champion.cascade.small.server.enabled) and an external upstream"),
    ({"champion": {"cascade": {"enabled": True, "threshold": 0.9,
                               "small": {"server": {"tflite": {"preferTfliteModel": False}}}}}},
     "champion.cascade.small would serve the same model as champion itself (version 3, preferTfliteModel false)"),
    ({"challenger": {"enabled": False}, "traffic": {"weights": {"champion": 100, "challenger": 0}}},
     "challenger.cascade.enabled is true but challenger.enabled is false"),
])
def test_inconsistent_values_fail_naming_the_key(render_values, change, message):
    values = copy.deepcopy(scenario_values("gateway-cascade"))
    for key, value in change.items():
        values[key] = {**values.get(key, {}), **value}
    with pytest.raises(HelmError) as err:
        render_values(values)
    assert message in str(err.value)


@pytest.mark.parametrize(("cascade", "message"), [
    ({"threshold": 1.5}, "/champion/cascade/threshold"),
    ({"threshold": 0}, "/champion/cascade/threshold"),
    ({"threshold": "high"}, "/champion/cascade/threshold"),
    ({"small": {"external": {"rest": "http://small:8501/v1/models"}}}, "/champion/cascade/small/external/rest"),
    ({"small": {"external": {"grpc": "small"}}}, "/champion/cascade/small/external/grpc"),
    ({"small": {"version": 0}}, "/champion/cascade/small/version"),
    ({"small": {"server": {"autoscaling": {"minReplicas": 0}}}}, "/champion/cascade/small/server/autoscaling/minReplicas"),
    ({"smal": {}}, "additional properties 'smal' not allowed"),
])
def test_the_schema_refuses_bad_cascade_values_naming_them(chart, cascade, message):
    from helm_python import HelmValuesError

    with pytest.raises(HelmValuesError) as err:
        chart.validate_schema({"champion": {"cascade": {"enabled": True, "threshold": 0.9, **cascade}}})
    assert message in str(err.value)


def test_a_threshold_of_one_is_accepted(render_values):
    values = _values(champion={"enabled": True, "threshold": 1})
    assert _table(render_values(values)).cascades["champion"].threshold == 1.0


def test_the_small_servers_flags_and_files_are_what_ingot_serve_accepts(render_values, tmp_path):
    """The rendered command line goes through `ingot serve`'s own parser and option checks, with the
    rendered model, monitoring and batching configs as the files it names."""
    values = _values()
    values["server"] = {"batching": {"enabled": True}, "warmupIterations": 2}
    rendered = render_values(values)
    container = rendered.get("Deployment", "ingot-challenger-small")["spec"]["template"]["spec"]["containers"][0]
    options = ingot_serve_options(rendered, container, "ingot-challenger-small-model-config", tmp_path)
    (config,) = options.model_config.model_config_list.config
    assert (config.name, config.base_path, list(config.model_version_policy.specific.versions)) == (
        "ingot", "/models/ingot", [4])
    assert (options.host, options.grpc_port, options.rest_port) == ("0.0.0.0", 8500, 8501)
    assert options.manager.prefer_tflite_model and options.manager.tflite_interpreters == 4  # 2 pools x 2
    assert options.manager.batching is not None and options.manager.warmup_iterations == 2


def test_from_object_storage_the_small_server_pre_pulls_its_version(render_values):
    values = _values()
    values["storage"] = {"mode": "objectStore", "objectStore": {"uri": "gs://models-bucket/repo",
                                                                "credentials": {"existingSecret": "gcs-key"}}}
    values["networkPolicy"] = {"egress": {"objectStore": {"peers": [{"ipBlock": {"cidr": "199.36.153.8/30"}}]}}}
    rendered = render_values(values)
    full = rendered.get("Deployment", "ingot-champion")["spec"]["template"]["spec"]
    small = rendered.get("Deployment", "ingot-champion-small")["spec"]["template"]["spec"]
    assert "initContainers" not in full  # TF Serving reads gs:// itself
    [pull] = small["initContainers"]  # LiteRT needs a local file
    assert {e["name"]: e.get("value") for e in pull["env"]}["SOURCE_PATH"] == "models-bucket/repo/ingot/3"
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in small["containers"][0]["volumeMounts"]
    configs = {arm: parse_model_server_config(rendered.get("ConfigMap", f"ingot-{arm}-model-config")["data"][
        "models.config"]).model_config_list.config[0].base_path for arm in ("champion", "champion-small")}
    assert configs == {"champion": "gs://models-bucket/repo/ingot", "champion-small": "/models/ingot"}
    for version in K8S_VERSIONS:
        validate_any(rendered.get("Deployment", "ingot-champion-small"), version)
