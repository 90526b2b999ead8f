"""Render the chart with Helm's own Go engine (helm-python-sdk) and look objects up in the result.

Helm's engine runs in-process, so rendering needs no helm binary and no cluster. `Chart.render`
offers no way to declare cluster capabilities, but the library's render call accepts Helm's
`api_versions` and `kube_version` options (what `helm template --api-versions/--kube-version` set);
`render` passes them through the library's native call so `.Capabilities` can be tested.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from helm_python import Chart, _native

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "ingot"
CI_DIR = CHART_DIR / "ci"
RELEASE = "ingot"
NAMESPACE = "serving"
PROMETHEUS_OPERATOR_API = "monitoring.coreos.com/v1"


def scenario_names() -> list[str]:
    """The ci/*-values.yaml scenarios, by name ("minimal", "gpu", ...)."""
    return sorted(p.name.removesuffix("-values.yaml") for p in CI_DIR.glob("*-values.yaml"))


def scenario_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((CI_DIR / f"{name}-values.yaml").read_text()) or {}


@dataclass
class Rendered:
    """A rendered release: its Kubernetes objects (hooks included) and NOTES.txt."""

    objects: list[dict[str, Any]]
    notes: str
    templates: dict[str, str] = field(repr=False)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"no {kind}/{name} among {[self.ref(o) for o in self.objects]}")

    def kinds(self) -> set[str]:
        return {o["kind"] for o in self.objects}

    @staticmethod
    def ref(obj: dict[str, Any]) -> str:
        return f"{obj['kind']}/{obj['metadata']['name']}"

    def pod_specs(self) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(object ref, pod metadata, pod spec) for every Pod template and bare Pod."""
        yield from pod_specs(self.objects)


def pod_specs(objects: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for obj in objects:
        kind = obj["kind"]
        if kind == "Pod":
            yield Rendered.ref(obj), obj.get("metadata", {}), obj["spec"]
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            tpl = obj["spec"]["template"]
            yield Rendered.ref(obj), tpl.get("metadata", {}), tpl["spec"]
        elif kind == "CronJob":
            tpl = obj["spec"]["jobTemplate"]["spec"]["template"]
            yield Rendered.ref(obj), tpl.get("metadata", {}), tpl["spec"]


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]


def render(
    chart: Chart,
    values: dict[str, Any] | None = None,
    *,
    api_versions: Iterable[str] = (),
    kube_version: str | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> Rendered:
    """Render like `helm template` (schema validation included); raises HelmError subclasses on failure."""
    options: dict[str, Any] = {"name": release, "namespace": namespace}
    if api_versions:
        options["api_versions"] = list(api_versions)
    if kube_version:
        options["kube_version"] = kube_version
    raw = _native.call_string(
        "helm_render", chart._raw(), json.dumps(values or {}), json.dumps(options)
    )
    templates: dict[str, str] = json.loads(raw)
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(templates.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(objects=objects, notes=notes, templates=templates)


def ingot_serve_options(rendered: Rendered, container: dict[str, Any], model_config_map: str, tmp_path: Path) -> Any:
    """The ServerOptions `ingot serve` builds from a rendered container: its command line through
    the real parser and option checks, with the rendered model and server configs as the files."""
    from ingot.cli.main import build_parser
    from ingot.cli.serve import server_options

    files = {"model/models.config": rendered.get("ConfigMap", model_config_map)["data"]["models.config"],
             **{f"server/{k}": v for k, v in rendered.get("ConfigMap", "ingot-server-config")["data"].items()}}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    args = [a.replace("/etc/ingot/", f"{tmp_path}/") for a in container["args"]]
    return server_options(build_parser().parse_args([*container["command"][1:], *args]))
