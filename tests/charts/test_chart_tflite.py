"""Per-variant int8 serving: `tflite.preferTfliteModel` passes TF Serving's --prefer_tflite_model (and the
pool flags) to that variant's server only."""

from __future__ import annotations

import pytest
from helm_python import HelmError

from .chart_support import scenario_values


def _args(rendered, variant):
    return rendered.get("Deployment", f"ingot-{variant}")["spec"]["template"]["spec"]["containers"][0]["args"]


def test_off_by_default(minimal, canary_gateway):
    for rendered, variants in ((minimal, ["champion"]), (canary_gateway, ["champion", "challenger"])):
        for variant in variants:
            assert not [a for a in _args(rendered, variant) if "tflite" in a]


def test_challenger_alone_serves_the_int8_model(render_values):
    values = scenario_values("canary-gateway-api")
    values["challenger"]["tflite"] = {"preferTfliteModel": True, "numInterpretersPerPool": 2, "numPools": 1}
    rendered = render_values(values)
    challenger = _args(rendered, "challenger")
    assert [a for a in challenger if "tflite" in a] == [
        "--prefer_tflite_model=true", "--num_tflite_pools=1", "--num_tflite_interpreters_per_pool=2"]
    assert not [a for a in _args(rendered, "champion") if "tflite" in a]


def test_prefer_alone_keeps_the_servers_pool_defaults(render_values):
    values = scenario_values("minimal")
    values.setdefault("champion", {})["tflite"] = {"preferTfliteModel": True}
    assert [a for a in _args(render_values(values), "champion") if "tflite" in a] == ["--prefer_tflite_model=true"]


@pytest.mark.parametrize("tflite", [{"preferTfliteModel": "yes"}, {"numInterpretersPerPool": 0}, {"prefer": True}])
def test_schema_rejects_bad_values(render_values, tflite):
    values = scenario_values("minimal")
    values.setdefault("champion", {})["tflite"] = tflite
    with pytest.raises(HelmError):
        render_values(values)
