"""Fixtures: the chart loaded once, and each ci scenario rendered once per test session."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest
from helm_python import Chart

from .chart_support import CHART_DIR, PROMETHEUS_OPERATOR_API, Rendered, render, scenario_names, scenario_values

SCENARIOS = scenario_names()


@pytest.fixture(scope="session")
def chart() -> Chart:
    return Chart.load(CHART_DIR)


@pytest.fixture(scope="session")
def render_scenario(chart: Chart) -> Callable[..., Rendered]:
    """render_scenario(name, kube_version=None, prometheus_operator=False), cached for the session."""

    @cache
    def _render(name: str, kube_version: str | None = None, prometheus_operator: bool = False) -> Rendered:
        apis = (PROMETHEUS_OPERATOR_API,) if prometheus_operator else ()
        return render(chart, scenario_values(name), kube_version=kube_version, api_versions=apis)

    return _render


@pytest.fixture(scope="session")
def render_values(chart: Chart) -> Callable[..., Rendered]:
    """Render ad-hoc values (for concerns the ci scenarios do not cover)."""

    def _render(values: dict, **options) -> Rendered:
        return render(chart, values, **options)

    return _render


@pytest.fixture(scope="module")
def minimal(render_scenario) -> Rendered:
    return render_scenario("minimal")


@pytest.fixture(scope="module")
def gpu(render_scenario) -> Rendered:
    return render_scenario("gpu")


@pytest.fixture(scope="module")
def canary_gateway(render_scenario) -> Rendered:
    return render_scenario("canary-gateway-api")


@pytest.fixture(scope="module")
def canary_istio(render_scenario) -> Rendered:
    return render_scenario("canary-istio-mirror")


@pytest.fixture(scope="module")
def prepull(render_scenario) -> Rendered:
    return render_scenario("object-storage-prepull")
