"""Per-variant int8 serving: `tflite.preferTfliteModel` runs that variant (and only it) in `ingot serve
--prefer_tflite_model` (the Ingot image: LiteRT behind the SavedModel's signatures, which TF Serving's
own TFLite path lacks), through the same container spec as a cascade's small server, with /readyz
probes, a local copy of the model, and the variant's own model config, Service, HPA, PDB and
NetworkPolicy as before."""

from __future__ import annotations

import pytest
from helm_python import HelmError

from .chart_support import ingot_serve_options, scenario_values
from .kube_checks import K8S_VERSIONS, restricted_violations, validate_any
from .tf_serving_text import parse_model_server_config


def _container(rendered, variant):
    return rendered.get("Deployment", f"ingot-{variant}")["spec"]["template"]["spec"]["containers"][0]


def _args(rendered, variant):
    return _container(rendered, variant)["args"]


def _labels(rendered, variant):
    return rendered.get("Deployment", f"ingot-{variant}")["spec"]["template"]["metadata"]["labels"]


def _selects(selector, labels):
    return all(labels.get(key) == value for key, value in selector.items())


def _on_tflite(scenario="canary-gateway-api", arm="challenger", **tflite):
    values = scenario_values(scenario)
    values.setdefault(arm, {})["tflite"] = {"preferTfliteModel": True, **tflite}
    return values


def test_off_by_default(minimal, canary_gateway):
    for rendered, variants in ((minimal, ["champion"]), (canary_gateway, ["champion", "challenger"])):
        for variant in variants:
            assert not [a for a in _args(rendered, variant) if "tflite" in a]
            assert _container(rendered, variant)["command"] == ["/usr/bin/tensorflow_model_server"]


def test_challenger_alone_runs_ingot_serve_on_the_int8_model(render_values):
    rendered = render_values(_on_tflite(numInterpretersPerPool=2, numPools=1))
    challenger = _container(rendered, "challenger")
    assert (challenger["name"], challenger["image"], challenger["command"]) == (
        "ingot-serve", "ghcr.io/ingot/ingot:0.1.0", ["ingot", "serve"])
    assert [a for a in challenger["args"] if "tflite" in a] == [
        "--prefer_tflite_model=true", "--num_tflite_pools=1", "--num_tflite_interpreters_per_pool=2"]
    assert challenger["readinessProbe"]["httpGet"] == challenger["startupProbe"]["httpGet"] == {
        "path": "/readyz", "port": "http"}
    assert challenger["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # The champion keeps TF Serving and its float SavedModel.
    champion = _container(rendered, "champion")
    assert champion["command"] == ["/usr/bin/tensorflow_model_server"]
    assert not [a for a in champion["args"] if "tflite" in a]
    assert "exec" in champion["readinessProbe"]
    pod = rendered.get("Deployment", "ingot-challenger")["spec"]["template"]
    assert restricted_violations(pod["metadata"], pod["spec"]) == []
    for version in K8S_VERSIONS:
        validate_any(rendered.get("Deployment", "ingot-challenger"), version)


def test_prefer_alone_keeps_the_servers_pool_defaults(render_values):
    rendered = render_values(_on_tflite("minimal", "champion"))
    assert [a for a in _args(rendered, "champion") if "tflite" in a] == ["--prefer_tflite_model=true"]
    assert _container(rendered, "champion")["command"] == ["ingot", "serve"]


def test_the_variant_keeps_its_own_model_config_service_hpa_pdb_and_network_policy(render_values, canary_gateway):
    rendered = render_values(_on_tflite())
    labels = _labels(rendered, "challenger")
    assert labels == _labels(canary_gateway, "challenger")
    pod = rendered.get("Deployment", "ingot-challenger")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "model-config")
    assert volume["configMap"]["name"] == "ingot-challenger-model-config"
    (config,) = parse_model_server_config(
        rendered.get("ConfigMap", "ingot-challenger-model-config")["data"]["models.config"]).model_config_list.config
    (before,) = parse_model_server_config(
        canary_gateway.get("ConfigMap", "ingot-challenger-model-config")["data"]["models.config"]).model_config_list.config
    assert config == before  # same model, versions and labels (the PVC's /models/ingot either way)
    for kind in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert rendered.get(kind, "ingot-challenger")["spec"] == canary_gateway.get(kind, "ingot-challenger")["spec"]
    assert _selects(rendered.get("Service", "ingot-challenger")["spec"]["selector"], labels)
    assert _selects(rendered.get("PodDisruptionBudget", "ingot-challenger")["spec"]["selector"]["matchLabels"], labels)
    assert rendered.get("HorizontalPodAutoscaler", "ingot-challenger")["spec"]["scaleTargetRef"]["name"] == "ingot-challenger"
    policy = rendered.get("NetworkPolicy", "ingot")["spec"]
    assert policy == canary_gateway.get("NetworkPolicy", "ingot")["spec"]
    assert _selects(policy["podSelector"]["matchLabels"], labels)


def test_the_rendered_command_line_is_what_ingot_serve_accepts(render_values, tmp_path):
    """The variant's command line goes through `ingot serve`'s own parser and option checks, with the
    rendered model, monitoring and batching configs as the files it names."""
    values = _on_tflite(numPools=2, numInterpretersPerPool=3)
    values["server"] = {"batching": {"enabled": True}, "warmupIterations": 2}
    rendered = render_values(values)
    options = ingot_serve_options(rendered, _container(rendered, "challenger"), "ingot-challenger-model-config", tmp_path)
    (config,) = options.model_config.model_config_list.config
    assert (config.name, config.base_path, list(config.model_version_policy.specific.versions)) == (
        "ingot", "/models/ingot", [4])
    assert (options.host, options.grpc_port, options.rest_port) == ("0.0.0.0", 8500, 8501)
    assert options.manager.prefer_tflite_model and options.manager.tflite_interpreters == 6  # 2 pools x 3
    assert options.manager.batching is not None and options.manager.warmup_iterations == 2


def test_from_object_storage_the_variant_pre_pulls_its_version(render_values):
    values = _on_tflite("minimal", "champion")
    values["storage"] = {"mode": "objectStore", "objectStore": {"uri": "gs://models-bucket/repo",
                                                                "credentials": {"existingSecret": "gcs-key"}}}
    values["networkPolicy"] = {"egress": {"objectStore": {"peers": [{"ipBlock": {"cidr": "199.36.153.8/30"}}]}}}
    rendered = render_values(values)
    pod = rendered.get("Deployment", "ingot-champion")["spec"]["template"]["spec"]
    [pull] = pod["initContainers"]  # LiteRT needs a local file, as a cascade's small server
    assert {e["name"]: e.get("value") for e in pull["env"]}["SOURCE_PATH"] == "models-bucket/repo/ingot/1"
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert "--model_config_file_poll_wait_seconds=0" in pod["containers"][0]["args"]
    (config,) = parse_model_server_config(
        rendered.get("ConfigMap", "ingot-champion-model-config")["data"]["models.config"]).model_config_list.config
    assert config.base_path == "/models/ingot"
    for version in K8S_VERSIONS:
        validate_any(rendered.get("Deployment", "ingot-champion"), version)
    # Without tflite the same values keep TF Serving reading gs:// itself.
    values["champion"]["tflite"] = {"preferTfliteModel": False}
    rendered = render_values(values)
    assert "initContainers" not in rendered.get("Deployment", "ingot-champion")["spec"]["template"]["spec"]


def test_a_variant_on_the_int8_model_stays_on_cpu_when_the_others_use_gpus(render_values):
    values = _on_tflite()
    values["gpu"] = {"enabled": True}
    rendered = render_values(values)
    champion = rendered.get("Deployment", "ingot-champion")["spec"]["template"]["spec"]
    challenger = rendered.get("Deployment", "ingot-challenger")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" in champion["containers"][0]["resources"]["limits"]
    assert challenger["containers"][0]["image"] == "ghcr.io/ingot/ingot:0.1.0"
    assert "nvidia.com/gpu" not in challenger["containers"][0]["resources"].get("limits", {})
    assert not challenger.get("tolerations") and not challenger.get("nodeSelector")


@pytest.mark.parametrize("tflite", [{"preferTfliteModel": "yes"}, {"numInterpretersPerPool": 0}, {"prefer": True}])
def test_schema_rejects_bad_values(render_values, tflite):
    values = scenario_values("minimal")
    values.setdefault("champion", {})["tflite"] = tflite
    with pytest.raises(HelmError):
        render_values(values)
