"""The drift monitor's CronJob in manifests/: its command line is what `ingot monitor check`
accepts, it reads the registry URL from the pipeline's Secret, and drift fails the Job once."""

from __future__ import annotations

import re

import pytest

from tests.manifests.test_kustomize import BUILDS, _get, _kustomize, rbac_problems


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    return {path: _kustomize(path) for path in BUILDS}


def _config(objects, container) -> dict[str, str]:
    """The container's ConfigMap environment (generated names carry a content hash)."""
    config: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            config.update(_get(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    return config


def _container(objects):
    cronjob = _get(objects, "CronJob", "ingot-monitor")
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return cronjob, container


@pytest.mark.parametrize("path", BUILDS)
def test_monitor_args_parse_with_the_real_ingot_parser(built, path):
    from ingot.cli.main import build_parser

    objects = built[path]
    _, container = _container(objects)
    config = _config(objects, container)
    used = re.findall(r"\$\((\w+)\)", " ".join(container["args"]))
    assert used and all(var in config for var in used), [v for v in used if v not in config]
    argv = [re.sub(r"\$\((\w+)\)", lambda m: config[m.group(1)], arg) for arg in container["args"]]
    args = build_parser().parse_args(argv)
    assert (args.command, args.monitor_command, args.model) == ("monitor", "check", config["MODEL_NAME"])
    assert args.trigger and args.host == config["KFP_HOST"] and args.dataset == config["DATASET_URI"]
    assert args.window == int(config["MONITOR_WINDOW"]) and args.cooldown.total_seconds() == 24 * 3600
    assert args.handler.__name__ == "check_command"


@pytest.mark.parametrize("path", BUILDS)
def test_monitor_reads_the_registry_secret_and_fails_the_job_once_on_drift(built, path):
    cronjob, container = _container(built[path])
    env = {e["name"]: e for e in container["env"]}
    assert env["INGOT_REGISTRY_URL"]["valueFrom"]["secretKeyRef"] == {"name": "ingot-registry", "key": "url"}
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    (rule,) = spec["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [3]
    assert rule["onExitCodes"]["containerName"] == container["name"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ingot-monitor" and pod["automountServiceAccountToken"] is False
    assert container["image"].startswith("ghcr.io/ingot/ingot:")


@pytest.mark.parametrize("path", BUILDS)
def test_monitor_reads_the_capture_store_so_triggered_runs_train_on_production_rows(built, path):
    objects = built[path]
    _, container = _container(objects)
    config = _config(objects, container)
    capture = config["INGOT_CAPTURE_URL"]
    # Production names the object store the pipeline's pods read; the base leaves it empty (base data only).
    if path == "overlays/prod":
        assert capture.startswith(("s3://", "gs://")), capture
    else:
        assert capture == "", capture
    secrets = [s["secretRef"] for s in container["envFrom"] if "secretRef" in s]
    assert secrets == [{"name": "ingot-capture", "optional": True}]


def test_monitor_role_grants_only_starting_and_reading_kfp_runs(built):
    role = _get(built["base"], "Role", "ingot-monitor")
    assert rbac_problems(role) == []
    assert {g for r in role["rules"] for g in r["apiGroups"]} == {"pipelines.kubeflow.org"}
    binding = _get(built["base"], "RoleBinding", "ingot-monitor")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ingot-monitor", "namespace": "ingot-pipelines"}]
    account = _get(built["base"], "ServiceAccount", "ingot-monitor")
    assert account["automountServiceAccountToken"] is False
