"""Champion and challenger: separate Deployments, model configs, Services, HPAs and PDBs."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from .tf_serving_text import parse_batching_parameters, parse_model_server_config, parse_monitoring_config


def _model_config(rendered, variant):
    text = rendered.get("ConfigMap", f"ingot-{variant}-model-config")["data"]["models.config"]
    return parse_model_server_config(text).model_config_list.config


def test_model_config_pins_each_variant_to_its_version_and_label(canary_gateway):
    (champion,) = _model_config(canary_gateway, "champion")
    (challenger,) = _model_config(canary_gateway, "challenger")
    assert (champion.name, challenger.name) == ("ingot", "ingot")
    assert list(champion.model_version_policy.specific.versions) == [3]
    assert dict(champion.version_labels) == {"stable": 3}
    assert list(challenger.model_version_policy.specific.versions) == [4]
    assert dict(challenger.version_labels) == {"canary": 4}
    assert champion.base_path == "/models/ingot"  # <base>/<model_name>, versions below it
    assert champion.model_platform == "tensorflow"


def test_each_deployment_mounts_its_own_model_config(canary_gateway):
    for variant in ("champion", "challenger"):
        pod = canary_gateway.get("Deployment", f"ingot-{variant}")["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "model-config")
        assert volume["configMap"]["name"] == f"ingot-{variant}-model-config"
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "model-config")
        # A directory mount (no subPath): the kubelet refreshes it when the pipeline patches the ConfigMap.
        assert mount == {"name": "model-config", "mountPath": "/etc/ingot/model", "readOnly": True}


def test_challenger_is_off_by_default(minimal):
    assert [d["metadata"]["name"] for d in minimal.of_kind("Deployment")] == ["ingot-champion"]
    assert not any("challenger" in o["metadata"]["name"] for o in minimal.objects)


def test_one_hpa_per_variant_targets_its_own_deployment(canary_gateway, canary_istio):
    for rendered in (canary_gateway, canary_istio):
        hpas = {h["metadata"]["name"]: h for h in rendered.of_kind("HorizontalPodAutoscaler")}
        assert set(hpas) == {"ingot-champion", "ingot-challenger"}
        for name, hpa in hpas.items():
            assert hpa["apiVersion"] == "autoscaling/v2"
            assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
            assert hpa["spec"]["minReplicas"] >= 1
            # Fast up, damped down.
            assert hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
            assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
            # The HPA owns the replica count: a helm upgrade must not reset it.
            assert "replicas" not in rendered.get("Deployment", name)["spec"]


def test_hpa_uses_cpu_by_default_and_custom_metrics_from_values(canary_istio):
    champion = canary_istio.get("HorizontalPodAutoscaler", "ingot-champion")["spec"]["metrics"]
    assert champion == [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    challenger = canary_istio.get("HorizontalPodAutoscaler", "ingot-challenger")["spec"]
    assert challenger["metrics"][0]["type"] == "Pods"
    assert challenger["metrics"][0]["pods"]["metric"]["name"] == "tensorflow_serving_requests_per_second"
    assert (challenger["minReplicas"], challenger["maxReplicas"]) == (2, 6)


def test_fixed_replicas_without_autoscaling(render_values):
    rendered = render_values({"champion": {"autoscaling": {"enabled": False}, "replicas": 3}})
    assert rendered.of_kind("HorizontalPodAutoscaler") == []
    assert rendered.get("Deployment", "ingot-champion")["spec"]["replicas"] == 3


def test_pdb_per_variant_never_blocks_drains_of_loading_pods(canary_gateway):
    pdbs = {p["metadata"]["name"]: p["spec"] for p in canary_gateway.of_kind("PodDisruptionBudget")}
    assert set(pdbs) == {"ingot-champion", "ingot-challenger"}
    for name, spec in pdbs.items():
        assert spec["maxUnavailable"] == 1
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert spec["selector"]["matchLabels"]["ingot.dev/variant"] == name.removeprefix("ingot-")


def test_pods_spread_over_zones_and_nodes_per_variant(canary_gateway):
    pod = canary_gateway.get("Deployment", "ingot-challenger")["spec"]["template"]["spec"]
    keys = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert set(keys) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in keys.values():
        assert constraint["labelSelector"]["matchLabels"]["ingot.dev/variant"] == "challenger"
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"]["ingot.dev/variant"] == "challenger"


def test_monitoring_config_enables_prometheus_on_the_rest_port(minimal):
    data = minimal.get("ConfigMap", "ingot-server-config")["data"]
    config = parse_monitoring_config(data["monitoring.config"])
    assert config.prometheus_config.enable is True
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"
    assert "batching.config" not in data


def test_gpu_scenario_batches_with_a_valid_parameters_file(gpu):
    data = gpu.get("ConfigMap", "ingot-server-config")["data"]
    params = parse_batching_parameters(data["batching.config"])
    assert params.max_batch_size.value == 32
    assert params.batch_timeout_micros.value == 5000
    assert params.num_batch_threads.value == 2
    assert list(params.allowed_batch_sizes) == [1, 2, 4, 8, 16, 32]
    args = gpu.get("Deployment", "ingot-champion")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--enable_batching=true" in args
    assert "--batching_parameters_file=/etc/ingot/server/batching.config" in args
    # Batching parameters are read once at start: a change must roll the pods.
    annotations = gpu.get("Deployment", "ingot-champion")["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/server-config"]) == 64


@pytest.mark.parametrize(
    ("batching", "message"),
    [
        ({"maxBatchSize": 16, "allowedBatchSizes": [1, 8, 32]}, "must end with maxBatchSize"),
        ({"maxBatchSize": 32, "allowedBatchSizes": [1, 8, 4, 32]}, "must be strictly increasing"),
    ],
)
def test_batch_sizes_are_checked(render_values, batching, message):
    from helm_python import HelmError

    with pytest.raises(HelmError, match=message):
        render_values({"server": {"batching": {"enabled": True, **batching}}})


def test_model_config_text_is_rejected_by_the_parser_when_malformed():
    # The parser the tests rely on does reject a misspelled field.
    with pytest.raises(text_format.ParseError, match="verions"):
        parse_model_server_config('model_config_list { config { name: "x" model_version_policy { specific { verions: 1 } } } }')


def test_a_version_set_through_values_rolls_the_variant(render_values):
    """TF Serving will not move an existing label to a version still loading (and then loads nothing),
    so a one-step config change cannot swap in place; new values roll warm pods instead."""
    def pod_template(version):
        return render_values({"champion": {"version": version}}).get("Deployment", "ingot-champion")["spec"]["template"]

    old, new = pod_template(3), pod_template(4)
    assert old["metadata"]["annotations"]["ingot.dev/model-version"] == "3"
    assert new["metadata"]["annotations"]["ingot.dev/model-version"] == "4"
    # In-place reloads by config polling stay on for patches made by the pipeline.
    assert "--model_config_file_poll_wait_seconds=30" in new["spec"]["containers"][0]["args"]


def test_version_label_can_be_left_out(render_values):
    rendered = render_values({"champion": {"version": 5, "versionLabel": ""}})
    (config,) = _model_config(rendered, "champion")
    assert dict(config.version_labels) == {}
    assert list(config.model_version_policy.specific.versions) == [5]
