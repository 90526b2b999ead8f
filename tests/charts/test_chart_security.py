"""Hardening: the restricted Pod Security Standard for every pod the chart renders, tokens, images, NetworkPolicy."""

from __future__ import annotations

import copy

import pytest

from .chart_support import all_containers
from .conftest import SCENARIOS
from .kube_checks import restricted_violations


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_meets_the_restricted_pod_security_standard(render_scenario, scenario):
    rendered = render_scenario(scenario)
    specs = list(rendered.pod_specs())
    # Deployments (with their init containers) and the helm test pod are all checked.
    assert {ref.split("/")[0] for ref, _, _ in specs} == {"Deployment", "Pod"}
    violations = {ref: restricted_violations(meta, spec) for ref, meta, spec in specs}
    assert violations == {ref: [] for ref, _, _ in specs}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s["containers"][0]["securityContext"].update(privileged=True), "privileged must be unset or false"),
        (lambda s: s["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation must be false"),
        (lambda s: s["initContainers"][0]["securityContext"].pop("allowPrivilegeEscalation"), "initContainers[pre-pull]: allowPrivilegeEscalation"),
        (lambda s: s["securityContext"].update(runAsUser=0), "spec.securityContext.runAsUser must not be 0"),
        (lambda s: [s["securityContext"].pop("runAsNonRoot"), s["containers"][0]["securityContext"].pop("runAsNonRoot")], "runAsNonRoot must be true"),
        (lambda s: s["containers"][0]["securityContext"]["capabilities"].update(drop=["NET_RAW"]), "capabilities must drop ALL"),
        (lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]), "may only add NET_BIND_SERVICE"),
        (lambda s: s["containers"][0]["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccompProfile.type Unconfined"),
        (lambda s: [s["securityContext"].pop("seccompProfile"), s["containers"][0]["securityContext"].pop("seccompProfile")], "seccompProfile must be RuntimeDefault"),
        (lambda s: s["volumes"].append({"name": "host", "hostPath": {"path": "/"}}), "volume host uses ['hostPath']"),
        (lambda s: s.update(hostNetwork=True), "spec.hostNetwork must be unset or false"),
        (lambda s: s["containers"][0]["ports"][0].update(hostPort=8500), "hostPort 8500 not allowed"),
        (lambda s: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]), "kernel.msgmax is not a safe sysctl"),
        (lambda s: s["containers"][0]["securityContext"].update(seLinuxOptions={"user": "root"}), "seLinuxOptions"),
    ],
)
def test_the_pss_check_catches_each_violation(prepull, mutate, expected):
    _, meta, spec = next(prepull.pod_specs())
    spec = copy.deepcopy(spec)
    mutate(spec)
    assert any(expected in v for v in restricted_violations(meta, spec)), restricted_violations(meta, spec)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_read_only_root_with_a_writable_tmp_everywhere(render_scenario, scenario):
    for ref, _, spec in render_scenario(scenario).pod_specs():
        for container in all_containers(spec):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, (ref, container["name"])
            assert container["securityContext"]["runAsUser"] == 65532
        if ref.startswith("Deployment"):
            tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
            assert tmp == {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}
            for container in all_containers(spec):
                assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_service_account_token_is_never_mounted(canary_gateway):
    (account,) = canary_gateway.of_kind("ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    for ref, _, spec in canary_gateway.pod_specs():
        assert spec["automountServiceAccountToken"] is False, ref


def test_tf_serving_image_is_pinned(minimal, render_values):
    image = minimal.get("Deployment", "ingot-champion")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "tensorflow/serving:2.21.0"
    digest = "sha256:" + "a" * 64
    rendered = render_values({"image": {"digest": digest}})
    assert rendered.get("Deployment", "ingot-champion")["spec"]["template"]["spec"]["containers"][0]["image"] == \
        f"tensorflow/serving:2.21.0@{digest}"


def test_gpu_scenario_requests_gpus_on_gpu_nodes_with_the_gpu_image(gpu):
    pod = gpu.get("Deployment", "ingot-champion")["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["image"] == "tensorflow/serving:2.21.0-gpu"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert "--per_process_gpu_memory_fraction=0.9" in server["args"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_cpu_scenarios_request_no_gpu(minimal):
    server = minimal.get("Deployment", "ingot-champion")["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in server["resources"]["limits"]
    assert not server["image"].endswith("-gpu")


def test_network_policy_admits_gateway_mesh_monitoring_and_the_test_pod(minimal):
    policy = minimal.get("NetworkPolicy", "ingot")["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "model-server"
    clients, monitoring = policy["ingress"]
    namespaces = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in clients["from"] if "namespaceSelector" in p}
    assert namespaces == {"gateway-system", "istio-system"}
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "ingot", "app.kubernetes.io/component": "helm-test"}}} in clients["from"]
    assert {p["port"] for p in clients["ports"]} == {"grpc", "http"}
    assert monitoring["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert monitoring["ports"] == [{"port": "http", "protocol": "TCP"}]
    # The test pod carries the label the policy admits.
    assert minimal.get("Pod", "ingot-test-model-status")["metadata"]["labels"]["app.kubernetes.io/component"] == "helm-test"


def test_egress_allows_object_storage_only_when_used(minimal, prepull):
    def ports(rendered):
        return [{p["port"] for p in rule["ports"]} for rule in rendered.get("NetworkPolicy", "ingot")["spec"]["egress"]]

    assert ports(minimal) == [{53}]
    # Issue 16: no egress to 0.0.0.0/0:443; the scenario's MinIO rule (extraRules) is all it gets.
    assert ports(prepull) == [{53}, {9000}]


def test_helm_test_pod_may_only_reach_the_model_servers(minimal):
    policy = minimal.get("NetworkPolicy", "ingot-test")["spec"]
    pod_labels = minimal.get("Pod", "ingot-test-model-status")["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in policy["podSelector"]["matchLabels"].items())
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy  # nothing may connect to it
    servers, dns = policy["egress"]
    assert servers["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "model-server"
    assert servers["ports"] == [{"port": 8501, "protocol": "TCP"}]
    assert {p["port"] for p in dns["ports"]} == {53}


def test_ambient_cloud_identity_may_reach_the_metadata_server(render_values):
    # Issue 16: the metadata server only when asked for (allowMetadataServer), the object store only
    # at the endpoints named.
    rendered = render_values({"storage": {"mode": "objectStore", "objectStore": {"uri": "gs://models"}},
                              "networkPolicy": {"egress": {"allowMetadataServer": True, "objectStore": {
                                  "peers": [{"ipBlock": {"cidr": "199.36.153.8/30"}}]}}}})
    rules = rendered.get("NetworkPolicy", "ingot")["spec"]["egress"]
    metadata = [r for r in rules if r.get("to") == [{"ipBlock": {"cidr": "169.254.169.254/32"}}]]
    assert len(metadata) == 1
    assert {p["port"] for p in metadata[0]["ports"]} == {80, 988}
