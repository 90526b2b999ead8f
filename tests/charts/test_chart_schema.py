"""values.schema.json: rejects misspelled keys and bad values with a message naming them; stays in step with values.yaml."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from helm_python import HelmValuesError

from .chart_support import CHART_DIR


@pytest.fixture(scope="module")
def schema():
    return json.loads((CHART_DIR / "values.schema.json").read_text())


@pytest.fixture(scope="module")
def defaults():
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def test_schema_is_draft_07(schema):
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"champion": {"verison": 3}}, "additional properties 'verison' not allowed"),
        ({"trafic": {"mode": "istio"}}, "additional properties 'trafic' not allowed"),
        ({"traffic": {"weights": {"champion": 150, "challenger": 0}}}, "maximum: got 150, want 100"),
        ({"traffic": {"weights": {"champion": 100, "challengr": 0}}}, "additional properties 'challengr' not allowed"),
        ({"traffic": {"mode": "linkerd"}}, "value must be one of 'none', 'gatewayAPI', 'istio'"),
        ({"image": {"tag": "latest"}}, "/image/tag"),
        ({"image": {"digest": "sha256:abc"}}, "/image/digest"),
        ({"challenger": {"enabled": True}}, "missing property 'version'"),
        ({"champion": {"autoscaling": {"minReplicas": 0}}}, "minimum: got 0, want 1"),
        ({"securityContext": {"runAsUser": 0}}, "minimum: got 0, want 1"),
        ({"storage": {"objectStore": {"uri": "azure://models"}}}, "/storage/objectStore/uri"),
        # Helm deletes a key set to null: a container's memory limit cannot be dropped.
        ({"champion": {"resources": {"limits": {"memory": None}}}}, "missing property 'memory'"),
    ],
)
def test_schema_rejects_bad_values_naming_them(chart, values, message):
    # validate_schema coalesces the values with the chart's defaults first, as helm install does.
    with pytest.raises(HelmValuesError) as err:
        chart.validate_schema(values)
    assert message in str(err.value)


def test_render_refuses_a_misspelled_key(render_values):
    with pytest.raises(HelmValuesError, match="additional properties 'wieghts' not allowed"):
        render_values({"traffic": {"wieghts": {"champion": 50, "challenger": 50}}})


def test_chart_defaults_pass_the_schema(chart):
    chart.validate_schema({})


def _resolve(node, schema):
    """The object schema behind a $ref or an allOf that starts with one."""
    if "$ref" in node:
        node = schema["definitions"][node["$ref"].split("/")[-1]]
    for part in node.get("allOf", []):
        if "$ref" in part:
            node = {**schema["definitions"][part["$ref"].split("/")[-1]]}
    return node


def test_every_values_key_is_in_the_schema_and_every_schema_key_in_values(schema, defaults):
    """Schemas that drift from values.yaml are how misspellings slip through (or valid keys get refused)."""
    missing_in_schema, missing_in_values = [], []

    def walk(value, node, path):
        node = _resolve(node, schema)
        if node.get("type") != "object" or "properties" not in node:
            return
        props = node["properties"]
        if node.get("additionalProperties") is False:
            missing_in_values.extend(".".join((*path, k)) for k in props if k not in value and k != "global")
        for key, child in value.items():
            if key not in props:
                if node.get("additionalProperties") is False:
                    missing_in_schema.append(".".join((*path, key)))
                continue
            if isinstance(child, dict):
                walk(child, props[key], (*path, key))

    walk(defaults, schema, ())
    assert missing_in_schema == []
    # The variant schema is shared; only the challenger can be switched off.
    assert [k for k in missing_in_values if k != "champion.enabled"] == []


def test_values_yaml_documents_every_key():
    """Every leaf key has a comment right above it, or sits in a section whose comment covers it."""
    lines = [line for line in (CHART_DIR / "values.yaml").read_text().splitlines() if line.strip()]
    undocumented = []
    ancestors: list[tuple[int, bool]] = []  # (indent, commented) of the enclosing section keys
    in_list_until = None  # keys inside list items (e.g. tolerations entries) are data, not settings
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if in_list_until is not None and indent > in_list_until:
            continue
        in_list_until = None
        if stripped.startswith("- "):
            in_list_until = indent
            continue
        match = re.match(r"^([A-Za-z][\w.-]*):(.*)$", stripped)
        if not match:
            continue
        while ancestors and ancestors[-1][0] >= indent:
            ancestors.pop()
        commented = lines[i - 1].lstrip().startswith("#") if i else False
        value = match.group(2).split(" #")[0].strip()
        following = lines[i + 1] if i + 1 < len(lines) else ""
        is_leaf = bool(value) or following.lstrip().startswith("- ")
        if is_leaf and not (commented or any(c for _, c in ancestors)):
            undocumented.append(match.group(1))
        if not is_leaf:
            ancestors.append((indent, commented))
    assert undocumented == []
