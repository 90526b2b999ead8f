"""Every ci scenario renders through Helm's engine, lints clean, and validates for Kubernetes 1.27 and the newest."""

from __future__ import annotations

import copy

import helm_python
import pytest
from helm_python import HelmError

from .chart_support import CHART_DIR, NAMESPACE, scenario_values
from .conftest import SCENARIOS
from .kube_checks import K8S_VERSIONS, validate_any, validate_core, validate_custom

CORE_KINDS = {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget",
              "Service", "ServiceAccount", "Pod"}


def test_ci_scenarios_are_the_five_the_issue_names():
    assert SCENARIOS == ["canary-gateway-api", "canary-istio-mirror", "gateway", "gateway-cascade", "gateway-rollout",
                         "gpu", "minimal", "object-storage-prepull"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_is_clean_in_strict_mode(scenario):
    for kube_version in K8S_VERSIONS:
        report = helm_python.lint(CHART_DIR, scenario_values(scenario), strict=True, namespace=NAMESPACE,
                                  kube_version=f"v{kube_version}.0")
        assert report["errors"] == []
        # Severity 1 is informational ("icon is recommended"); warnings (2) and errors (3) fail.
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_renders_the_core_objects(render_scenario, scenario):
    rendered = render_scenario(scenario)
    assert CORE_KINDS <= rendered.kinds()
    assert rendered.notes.strip()


@pytest.mark.parametrize("kube_version", K8S_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_validates_strictly(render_scenario, scenario, kube_version):
    # Rendered as that cluster version would, with the Prometheus Operator present so the
    # ServiceMonitor is validated too.
    rendered = render_scenario(scenario, kube_version=f"v{kube_version}.0", prometheus_operator=True)
    assert "ServiceMonitor" in rendered.kinds()
    for obj in rendered.objects:
        validate_any(obj, kube_version)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_is_namespaced_and_labelled(render_scenario, scenario):
    for obj in render_scenario(scenario).objects:
        meta = obj["metadata"]
        assert meta["namespace"] == NAMESPACE, obj["kind"]
        assert meta["labels"]["app.kubernetes.io/instance"] == "ingot"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "ingot"


def test_chart_refuses_clusters_older_than_1_27(chart, render_values):
    # helm install enforces Chart.yaml's kubeVersion; the template check makes `helm template` fail too.
    assert chart.metadata["kubeVersion"] == ">=1.27.0-0"
    with pytest.raises(HelmError, match="Kubernetes v1.26.9 is not supported: this chart needs 1.27 or newer"):
        render_values({}, kube_version="v1.26.9")
    render_values({}, kube_version="v1.27.0")


def test_core_validation_rejects_an_unknown_field(minimal):
    deployment = copy.deepcopy(minimal.get("Deployment", "ingot-champion"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(AssertionError, match="livenesProbe"):
        validate_core(deployment, K8S_VERSIONS[0])


def test_crd_structure_rejects_a_misspelled_field(canary_gateway, canary_istio):
    route = copy.deepcopy(canary_gateway.get("HTTPRoute", "ingot"))
    route["spec"]["rules"][-1]["backendRefs"][0]["wieght"] = route["spec"]["rules"][-1]["backendRefs"][0].pop("weight")
    with pytest.raises(AssertionError, match="wieght"):
        validate_custom(route)
    service = copy.deepcopy(canary_istio.get("VirtualService", "ingot"))
    service["spec"]["http"][0]["route"][0]["destination"]["port"] = {"numbr": 8500}
    with pytest.raises(AssertionError, match="numbr"):
        validate_custom(service)


def test_crd_structure_rejects_a_service_backend_without_port(canary_gateway):
    route = copy.deepcopy(canary_gateway.get("GRPCRoute", "ingot"))
    del route["spec"]["rules"][0]["backendRefs"][0]["port"]
    with pytest.raises(AssertionError, match="port"):
        validate_custom(route)
