"""manifests/: every overlay builds with `kubectl kustomize`, validates strictly, and grants least privilege."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.charts.chart_support import pod_specs
from tests.charts.kube_checks import K8S_VERSIONS, restricted_violations, validate_core

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
OVERLAYS = sorted(p.name for p in (MANIFESTS / "overlays").iterdir() if (p / "kustomization.yaml").exists())
BUILDS = ["base", *(f"overlays/{o}" for o in OVERLAYS)]
SERVING_NAMESPACE = "ingot-serving"
PIPELINES_NAMESPACE = "ingot-pipelines"


def _kustomize(path: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (1.32, with kustomize built in) is needed to build manifests/"
    result = subprocess.run([kubectl, "kustomize", str(MANIFESTS / path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    return {path: _kustomize(path) for path in BUILDS}


def _get(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_there_are_dev_and_prod_overlays():
    assert OVERLAYS == ["dev", "prod"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", BUILDS)
def test_build_validates_strictly(built, path, version):
    objects = built[path]
    assert {o["kind"] for o in objects} == {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "CronJob"}
    for obj in objects:
        validate_core(obj, version)


# The only unnamed grants allowed: runs and experiments the scheduler creates (no name exists before),
# and listing experiments, which is how the KFP client finds one by name.
_UNNAMED_OK = {("pipelines.kubeflow.org", "runs"): {"create", "get"},
               ("pipelines.kubeflow.org", "experiments"): {"create", "get", "list"},
               ("kubeflow.org", "tfjobs"): {"create", "get"}}  # a job's name is made per run
_NEVER = {"delete", "deletecollection", "escalate", "bind", "impersonate", "update", "watch"}


def rbac_problems(role: dict) -> list[str]:
    """Why a Role is not least privilege: wildcards, cluster scope, risky verbs, unnamed grants."""
    problems = []
    if role["kind"] != "Role":
        problems.append(f"{role['kind']}: namespaced Roles only")
    for rule in role.get("rules", []):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            if "*" in rule.get(field, []):
                problems.append(f"wildcard in {field}: {rule}")
        if _NEVER & set(rule["verbs"]):
            problems.append(f"verbs {sorted(_NEVER & set(rule['verbs']))} not allowed: {rule}")
        if rule.get("resourceNames"):
            if {"create", "list"} & set(rule["verbs"]):
                problems.append(f"resourceNames cannot restrict create or list: {rule}")
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                if not set(rule["verbs"]) <= _UNNAMED_OK.get((group, resource), set()):
                    problems.append(f"{group}/{resource} granted without resourceNames: {rule}")
    return problems


@pytest.mark.parametrize("path", BUILDS)
def test_rbac_has_no_wildcards_and_names_what_it_can(built, path):
    roles = [o for o in built[path] if o["kind"] in ("Role", "ClusterRole")]
    assert len(roles) == 3  # retrain scheduler, drift monitor, TFJob launcher
    assert {o["metadata"]["name"]: rbac_problems(o) for o in roles} == {o["metadata"]["name"]: [] for o in roles}


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}, "wildcard in verbs"),
        ({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]}, "granted without resourceNames"),
        ({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"], "verbs": ["delete"]}, "not allowed"),
        ({"apiGroups": ["pipelines.kubeflow.org"], "resources": ["runs"], "verbs": ["create", "list"]}, "without resourceNames"),
    ],
)
def test_least_privilege_check_catches_broad_rules(rule, problem):
    problems = rbac_problems({"kind": "Role", "rules": [rule]})
    assert any(problem in p for p in problems), problems


def test_the_pipeline_holds_no_rights_in_the_serving_namespace(built):
    """Promotion and rollback are the rollout controller's (the chart's own Role); the pipeline only
    publishes into the model repository, so nothing binds its identity in the serving namespace."""
    objects = built["base"]
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")
                and o["metadata"].get("namespace") == SERVING_NAMESPACE]
    bound = [o["metadata"]["name"] for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
             and {"kind": "ServiceAccount", "name": "ingot-pipeline", "namespace": PIPELINES_NAMESPACE}
             in o.get("subjects", [])]
    assert bound == ["ingot-tfjob-launcher"]  # its only rights: the TFJobs of multi-worker training


def test_scheduler_may_only_start_and_read_runs_through_kfp(built):
    role = _get(built["base"], "Role", "ingot-retrain-scheduler")
    assert {g for r in role["rules"] for g in r["apiGroups"]} == {"pipelines.kubeflow.org"}
    binding = _get(built["base"], "RoleBinding", "ingot-retrain-scheduler")
    assert binding["subjects"][0]["name"] == "ingot-retrain-scheduler"


def test_namespace_enforces_baseline_and_warns_on_restricted(built):
    labels = _get(built["base"], "Namespace", PIPELINES_NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


@pytest.mark.parametrize("path", BUILDS)
def test_cronjob_starts_ingot_retrain_on_kfp(built, path):
    objects = built[path]
    cronjob = _get(objects, "CronJob", "ingot-retrain")
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["ingot"]
    assert container["args"][:3] == ["pipeline", "run", "--host=$(KFP_HOST)"]
    # Every $(VAR) the args use comes from the generated ConfigMap (its hashed name resolved by kustomize).
    config_name = container["envFrom"][0]["configMapRef"]["name"]
    config = _get(objects, "ConfigMap", config_name)["data"]
    assert re.fullmatch(r"ingot-retrain-config-[a-z0-9]{10}", config_name)
    for var in re.findall(r"\$\((\w+)\)", " ".join(container["args"])):
        assert var in config, var
    assert config["KFP_HOST"].startswith("http")
    # The image comes from the kustomize images entry, never the placeholder name.
    assert container["image"].startswith("ghcr.io/ingot/ingot:")
    # KFP's client authenticates with a projected token scoped to the KFP API.
    assert pod["automountServiceAccountToken"] is False
    (token,) = [v for v in pod["volumes"] if v["name"] == "kfp-token"]
    assert token["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    assert {"name": "kfp-token", "mountPath": "/var/run/secrets/kubeflow/pipelines", "readOnly": True} in container["volumeMounts"]


@pytest.mark.parametrize("path", BUILDS)
def test_cronjob_args_are_what_the_ingot_cli_accepts(built, path):
    """The schedule and the CLI cannot drift: the CronJob's command line, with its variables
    filled from the ConfigMap, parses with the real `ingot` parser as a submission to KFP."""
    from ingot.cli.main import build_parser

    objects = built[path]
    (container,) = _get(objects, "CronJob", "ingot-retrain")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    config = _get(objects, "ConfigMap", container["envFrom"][0]["configMapRef"]["name"])["data"]
    argv = [re.sub(r"\$\((\w+)\)", lambda m: config[m.group(1)], arg) for arg in container["args"]]
    args = build_parser().parse_args(argv)
    assert args.host == config["KFP_HOST"]
    assert args.namespace == config["KFP_NAMESPACE"]
    assert args.dataset == config["DATASET_URI"]
    assert args.model_name == config["MODEL_NAME"]


def test_overlays_differ_where_they_should(built):
    def cron(path):
        return _get(built[path], "CronJob", "ingot-retrain")

    def image(path):
        return cron(path)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]

    assert cron("overlays/dev")["spec"]["schedule"] == "0 4 * * *"
    assert cron("overlays/prod")["spec"]["schedule"] == "0 2 * * 0"
    assert image("overlays/dev") == "ghcr.io/ingot/ingot:0.1.0-dev"
    assert image("overlays/prod") == "ghcr.io/ingot/ingot:0.1.0"
    for env in ("dev", "prod"):
        for obj in built[f"overlays/{env}"]:
            assert obj["metadata"]["labels"]["ingot.dev/environment"] == env
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ingot"


@pytest.mark.parametrize("path", BUILDS)
def test_pods_meet_restricted_pss_with_requests_and_limits(built, path):
    specs = list(pod_specs(built[path]))
    assert sorted(ref for ref, _, _ in specs) == ["CronJob/ingot-monitor", "CronJob/ingot-retrain"]
    for _ref, meta, spec in specs:
        assert restricted_violations(meta, spec) == []
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][section])


def test_the_pipeline_identity_may_create_and_read_tfjobs_and_nothing_more_there(built):
    """What ingot.train.tfjob calls (create_namespaced_custom_object, get_namespaced_custom_object)."""
    role = _get(built["base"], "Role", "ingot-tfjob-launcher")
    assert role["metadata"]["namespace"] == "ingot-pipelines"
    assert role["rules"] == [{"apiGroups": ["kubeflow.org"], "resources": ["tfjobs"], "verbs": ["create", "get"]}]
    binding = _get(built["base"], "RoleBinding", "ingot-tfjob-launcher")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ingot-pipeline", "namespace": "ingot-pipelines"}]
    account = _get(built["base"], "ServiceAccount", "ingot-pipeline")
    assert account["automountServiceAccountToken"] is True  # the step's pod needs its token to call the API
