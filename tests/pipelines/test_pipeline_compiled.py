"""The compiled ingot-retrain IR: the checked-in YAML matches the code (golden test, version
fields normalized), and the IR carries what a cluster run needs: the image setting, GPU through
parameters, node selector and tolerations, requests, retries, caching, the blessing branches, the
build-data step handing its dataset version to ingest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from components import DEFAULT_IMAGE
from pipelines.retrain import COMPILED_PATH, PIPELINE_NAME, canonical_header, compile_pipeline

_VERSION_FIELDS = re.compile(r"^(sdkVersion: ).*$", re.MULTILINE)


def _normalized(text: str) -> str:
    return _VERSION_FIELDS.sub(r"\1<normalized>", text)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    return compile_pipeline(tmp_path_factory.mktemp("compiled") / "ingot-retrain.yaml", image=DEFAULT_IMAGE)


@pytest.fixture(scope="module")
def documents(compiled):
    pipeline_spec, platform_spec = yaml.safe_load_all(compiled.read_text())
    return pipeline_spec, platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_checked_in_yaml_matches_the_pipeline_code(compiled):
    assert COMPILED_PATH.is_file(), "pipelines/compiled/ingot-retrain.yaml is missing: run `make pipelines`"
    fresh, checked_in = _normalized(compiled.read_text()), _normalized(COMPILED_PATH.read_text())
    assert fresh == checked_in, (
        "pipelines/compiled/ingot-retrain.yaml is out of date with pipelines/retrain.py or components/; "
        "run `make pipelines` and commit the result"
    )


def test_version_normalization_only_touches_version_fields():
    text = "sdkVersion: kfp-2.17.0\nimage: ingot:0.1.0\n"
    assert _normalized(text) == "sdkVersion: <normalized>\nimage: ingot:0.1.0\n"
    assert _normalized(text.replace("2.17.0", "9.9.9")) == _normalized(text)


def test_header_defaults_are_rendered_with_sorted_keys():
    header = "# Inputs:\n#    t: list [Default: [{'key': 'k', 'effect': 'e'}]]\n#    n: int [Default: 1.0]\nbody: {b: 1}\n"
    assert canonical_header(header) == (
        "# Inputs:\n#    t: list [Default: [{'effect': 'e', 'key': 'k'}]]\n#    n: int [Default: 1.0]\nbody: {b: 1}\n"
    )


def test_every_step_runs_in_the_configured_image(documents):
    spec, _ = documents
    assert spec["pipelineInfo"]["name"] == PIPELINE_NAME
    executors = spec["deploymentSpec"]["executors"]
    assert {name.removeprefix("exec-") for name in executors} == {
        "build-data", "ingest", "train", "evaluate", "publish", "register", "reject"
    }
    for executor in executors.values():
        container = executor["container"]
        assert container["image"] == DEFAULT_IMAGE
        assert "pip install" not in " ".join(container["command"])  # kfp and ingot are in the image


def test_image_is_read_when_the_pipeline_is_built_not_when_imported(monkeypatch, tmp_path):
    """pipelines.retrain and components were imported at the top of this file, before INGOT_IMAGE
    is set here: only building the pipeline reads it."""
    monkeypatch.setenv("INGOT_IMAGE", "registry.example.com/ml/ingot:1.2.3")
    spec = next(yaml.safe_load_all(compile_pipeline(tmp_path / "a.yaml").read_text()))
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {
        "registry.example.com/ml/ingot:1.2.3"
    }
    monkeypatch.setenv("INGOT_IMAGE", "")
    spec = next(yaml.safe_load_all(compile_pipeline(tmp_path / "b.yaml").read_text()))
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {DEFAULT_IMAGE}


def test_train_gets_gpu_requests_node_selector_and_tolerations_from_parameters(documents):
    spec, platform = documents
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    placeholder = "{{$.inputs.parameters['pipelinechannel--%s']}}"
    assert resources["accelerator"] == {
        "resourceType": placeholder % "accelerator_type",
        "resourceCount": placeholder % "accelerator_limit",
    }
    assert resources["resourceCpuRequest"] == placeholder % "train_cpu_request"
    assert resources["resourceMemoryRequest"] == placeholder % "train_memory_request"

    train = platform["exec-train"]
    assert train["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"] == "gpu_node_selector"
    assert train["tolerations"] == [{"tolerationJson": {"componentInputParameter": "gpu_tolerations"}}]

    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["accelerator_type"]["defaultValue"] == "nvidia.com/gpu"
    assert inputs["accelerator_limit"]["defaultValue"] == 1
    assert inputs["worker_accelerator_limit"]["defaultValue"] == 1  # per TFJob worker, apart from the step's own
    assert inputs["gpu_node_selector"]["defaultValue"] == {}
    assert inputs["gpu_tolerations"]["defaultValue"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    for step in ("build-data", "ingest", "evaluate", "publish", "register", "reject"):
        light = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]["resources"]
        assert light["resourceCpuRequest"] and light["resourceMemoryRequest"]
        assert "accelerator" not in light


def _tasks(spec):
    """Every task in the root DAG and in sub-DAGs (the If/Else branches), by name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_retries_on_train_and_no_caching_for_side_effects(documents):
    spec, _ = documents
    tasks = _tasks(spec)
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == 2
    assert tasks["train"]["retryPolicy"]["backoffDuration"] == "60s"  # time for a GPU node to come back
    # build-data too: its parameters name the production window (`until`), so a cached build is
    # the same data, and a run without production reuses its note and keeps ingest cached.
    for name in ("build-data", "ingest", "train", "evaluate"):
        assert tasks[name]["cachingOptions"].get("enableCache") is True
    for name in ("publish", "register", "reject"):
        assert not tasks[name]["cachingOptions"].get("enableCache", False), f"{name} must never be cached"


def test_publish_and_register_run_only_when_blessed_else_the_rejection_is_recorded(documents):
    spec, _ = documents
    (group,) = [task for name, task in spec["root"]["dag"]["tasks"].items() if name.startswith("condition")]
    assert set(group["dependentTasks"]) == {"evaluate"}
    branches = spec["components"][group["componentRef"]["name"]]["dag"]["tasks"]
    conditions = sorted(task["triggerPolicy"]["condition"] for task in branches.values())
    blessed = "inputs.parameter_values['pipelinechannel--evaluate-blessed'] == true"
    assert conditions == [f"!({blessed})", blessed]
    members = {
        task["triggerPolicy"]["condition"]: set(spec["components"][task["componentRef"]["name"]]["dag"]["tasks"])
        for task in branches.values()
    }
    assert members[blessed] == {"publish", "register"}
    assert members[f"!({blessed})"] == {"reject"}
    ingest = _tasks(spec)["ingest"]["inputs"]["parameters"]  # checks both destinations before training
    assert ingest["model_repository"]["componentInputParameter"] == "model_repository"
    assert ingest["registry_url"]["componentInputParameter"] == "registry_url"
    register = _tasks(spec)["register"]
    assert register["inputs"]["parameters"]["version"]["taskOutputParameter"]["producerTask"] == "publish"
    run_id = register["inputs"]["parameters"]["pipeline_run_id"]["runtimeValue"]["constant"]
    assert run_id == "{{$.pipeline_job_uuid}}"


def test_step_artifacts_are_the_kinds_the_kubeflow_ui_renders(documents):
    spec, _ = documents

    def outputs(step):
        definitions = spec["components"][f"comp-{step}"]["outputDefinitions"]
        return {name: a["artifactType"]["schemaTitle"] for name, a in definitions.get("artifacts", {}).items()}

    assert outputs("ingest") == {"dataset": "system.Dataset", "data_report": "system.HTML"}
    assert outputs("train") == {"model": "system.Model", "training_curves": "system.HTML"}
    assert outputs("evaluate") == {
        "metrics": "system.Metrics", "confusion_matrix": "system.ClassificationMetrics",
        "evaluation_report": "system.HTML", "evaluation": "system.Artifact", "serving_model": "system.Model",
    }
    blessed = spec["components"]["comp-evaluate"]["outputDefinitions"]["parameters"]["blessed"]
    assert blessed["parameterType"] == "BOOLEAN"


def test_pipeline_parameters_and_defaults(documents):
    spec, _ = documents
    inputs = {name: p.get("defaultValue") for name, p in spec["root"]["inputDefinitions"]["parameters"].items()}
    assert inputs["dataset_uri"] == "" and inputs["model_name"] == "digits"
    assert inputs["recipe"] == {} and inputs["overrides"] == []
    assert (inputs["architecture"], inputs["epochs"]) == ("", 0)
    assert (inputs["min_accuracy"], inputs["min_class_f1"], inputs["max_regression"]) == (0.9, 0.7, 0.01)
    assert inputs["int8_max_loss"] == 0.005  # GateThresholds' default: 0.5 points
    assert inputs["production"] == {}  # no production policy: train on the base
    assert inputs["model_repository"] == "" and inputs["registry_url"] == ""


def test_the_int8_tolerance_reaches_the_evaluate_step(documents):
    spec, _ = documents
    evaluate = _tasks(spec)["evaluate"]["inputs"]["parameters"]
    assert evaluate["int8_max_loss"]["componentInputParameter"] == "int8_max_loss"
    assert spec["components"]["comp-evaluate"]["inputDefinitions"]["parameters"]["int8_max_loss"][
        "parameterType"] == "NUMBER_DOUBLE"


def test_build_data_hands_its_dataset_artifact_to_ingest(documents):
    """The dataset version travels as an artifact (steps run in separate pods): build-data's
    `dataset` output is ingest's optional `built_dataset` input, and ingest runs after it."""
    spec, platform = documents
    tasks = _tasks(spec)
    build = tasks["build-data"]
    assert build["inputs"]["parameters"]["production"]["componentInputParameter"] == "production"
    for name in ("dataset_uri", "recipe", "overrides", "architecture", "epochs", "model_name", "registry_url"):
        assert build["inputs"]["parameters"][name]["componentInputParameter"] == name  # the same base as ingest
    assert build["taskInfo"]["name"] == "build dataset version"  # the display name
    assert spec["components"]["comp-build-data"]["outputDefinitions"]["artifacts"]["dataset"]["artifactType"][
        "schemaTitle"] == "system.Dataset"
    ingest = tasks["ingest"]
    assert ingest["inputs"]["artifacts"]["built_dataset"]["taskOutputArtifact"] == {
        "producerTask": "build-data", "outputArtifactKey": "dataset"}
    assert "build-data" in ingest["dependentTasks"]
    assert spec["components"]["comp-ingest"]["inputDefinitions"]["artifacts"]["built_dataset"]["isOptional"] is True
    # The inference log's URL and the capture store's credentials come from Secrets, never parameters.
    assert platform["exec-build-data"]["secretAsEnv"] == [
        {"keyToEnv": [{"envVar": key, "secretKey": key} for key in
                      ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")],
         "optional": True, "secretNameParameter": {"componentInputParameter": "capture_secret"}},
        {"keyToEnv": [{"envVar": "INGOT_REGISTRY_URL", "secretKey": "url"},
                      {"envVar": "INGOT_LOG_URL", "secretKey": "log_url"}],
         "optional": True, "secretNameParameter": {"componentInputParameter": "registry_secret"}},
    ]
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["capture_secret"]["defaultValue"] == "ingot-capture"
    assert not [name for name in inputs if "log_url" in name]


def test_registry_steps_read_the_registry_url_from_a_secret_not_a_parameter(documents):
    spec, platform = documents
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["registry_secret"]["defaultValue"] == "ingot-registry"

    def mount(parameter):
        return [{
            "keyToEnv": [{"envVar": "INGOT_REGISTRY_URL", "secretKey": "url"}],
            "optional": True,
            "secretNameParameter": {"componentInputParameter": parameter},
        }]

    for step in ("ingest", "evaluate"):
        assert platform[f"exec-{step}"]["secretAsEnv"] == mount("registry_secret"), step
    # Inside the blessed/rejected branches the parameter reaches the task through the branch's DAG.
    for step in ("register", "reject"):
        assert platform[f"exec-{step}"]["secretAsEnv"] == mount("pipelinechannel--registry_secret"), step
    # Steps that never talk to the registry don't get its credentials (build-data: above).
    for step in ("train", "publish"):
        assert "secretAsEnv" not in platform.get(f"exec-{step}", {}), step
