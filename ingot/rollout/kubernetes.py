"""The Kubernetes actuator: the same actions as the local one, through the official client.

Traffic, by `target["mode"]`:
- `ingot`: the gateway's routing ConfigMap (`routes_configmap`, key `routes.yaml`) gets the
  whole routing table, as the local routing file would;
- `gatewayAPI`: the weighted rule of the HTTPRoute and GRPCRoute (`httproute`, `grpcroute`):
  the backendRefs naming the champion and challenger Services get 100 - w and w;
- `istio`: the `split-*` routes of the VirtualService (`virtualservice`) get the same weights.
Versions: each variant's TF Serving model-config ConfigMap (`model_configmaps`, key
`models.config`), edited as a parsed ModelServerConfig so everything else in it is kept. An arm's
cascade small server that serves the arm's own version (`model_configmaps["<arm>-small"]`, e.g.
its int8 model.tflite) moves with the arm: the challenger's on prepare, the champion's on promotion
(both versions loaded, then the old one unloaded), and an arm is available only when its small
server has the version too.

Every write is read -> change -> patch carrying the `resourceVersion` that was read, so a
concurrent writer makes the API answer 409 and the actuator re-reads and tries again. Objects
not labelled as this release's (`app.kubernetes.io/instance: <release>`,
`app.kubernetes.io/part-of: ingot`) are never touched.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ingot.errors import ConfigError
from ingot.rollout.actuators import ActuationError, version_available, wait_available
from ingot.rollout.routing import STABLE_LABEL, routing_table, routing_yaml

if TYPE_CHECKING:
    from ingot.rollout.store import Rollout

log = logging.getLogger(__name__)

MODES = ("ingot", "gatewayAPI", "istio")
ROUTES_KEY = "routes.yaml"
MODEL_CONFIG_KEY = "models.config"
GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"
ISTIO_GROUP = "networking.istio.io"
CONFLICT_ATTEMPTS = 5


class KubernetesActuator:
    def __init__(self, api_client: Any, target: dict[str, Any], *, load_timeout_s: float = 300.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from kubernetes import client

        self.target = target
        self.mode = target.get("mode", "ingot")
        if self.mode not in MODES:
            raise ConfigError(f"kubernetes actuator mode {self.mode!r} is unknown; expected one of {', '.join(MODES)}")
        for key in ("namespace", "release"):
            if not target.get(key):
                raise ConfigError(f"the kubernetes actuator needs {key!r} in the rollout target")
        needed = {"ingot": ["routes_configmap"], "gatewayAPI": ["httproute", "champion_service", "challenger_service"],
                  "istio": ["virtualservice", "champion_host", "challenger_host"]}[self.mode]
        missing = [key for key in needed if not target.get(key)]
        if missing:
            raise ConfigError(f"the kubernetes actuator in mode {self.mode} needs {missing} in the rollout target")
        self.namespace = target["namespace"]
        self.release = target["release"]
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.load_timeout_s = load_timeout_s
        self.sleep = sleep

    @classmethod
    def from_target(cls, target: dict[str, Any]) -> KubernetesActuator:
        """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config()
            except (config.ConfigException, OSError) as err:
                raise ConfigError(f"no Kubernetes credentials: not in a pod and no usable kubeconfig ({err})") from None
        return cls(client.ApiClient(), target)

    # ------------------------------------------------------------------ actions

    def prepare(self, rollout: Rollout) -> None:
        self._set_versions(rollout, "challenger", [rollout.challenger_version], rollout.challenger_version)
        self._set_versions(rollout, "challenger-small", [rollout.challenger_version], None)

    def available(self, rollout: Rollout, arm: str, version: int) -> bool:
        rest = (self.target.get(arm) or {}).get("rest")
        if not rest:
            raise ConfigError(f"rollout target has no {arm}.rest URL (the {arm} Service's REST address)")
        if not version_available(rest, rollout.model, version):
            return False
        small = self._small_rest(arm)
        return small is None or version_available(small, rollout.model, version)

    def _small_rest(self, arm: str) -> str | None:
        """The REST URL of the arm's small server when it moves with the arm (None otherwise)."""
        if not (self.target.get("model_configmaps") or {}).get(f"{arm}-small"):
            return None
        rest = (((self.target.get(arm) or {}).get("cascade") or {}).get("small") or {}).get("rest")
        if not rest:
            raise ConfigError(f"rollout target names model_configmaps.{arm}-small but has no {arm}.cascade.small.rest")
        return str(rest)

    def set_weight(self, rollout: Rollout, weight: int) -> None:
        self._route(rollout, weight, rollout.champion_version)

    def promote(self, rollout: Rollout) -> None:
        old, new = rollout.champion_version, rollout.challenger_version
        if self._stable_version(rollout, "champion") != new:  # a resumed promotion never moves it back
            self._set_versions(rollout, "champion", [old, new], old)
            self._set_versions(rollout, "champion-small", [old, new], None)  # its small model moves with it
        wait_available(lambda: self.available(rollout, "champion", new),
                       f"{rollout.model}:{new} on the champion servers", self.load_timeout_s)
        self._set_versions(rollout, "champion", [old, new], new)
        self._route(rollout, 0, new)  # one write: champion pinned to new (mode ingot), challenger share 0
        self.sleep(float(self.target.get("drain_s", 10.0)))
        self._set_versions(rollout, "champion", [new], new)
        self._set_versions(rollout, "champion-small", [new], None)

    # ------------------------------------------------------------------ objects

    def _route(self, rollout: Rollout, weight: int, champion_version: int) -> None:
        if self.mode == "ingot":
            def change(obj: dict[str, Any]) -> dict[str, Any]:
                table = routing_table(self.target, model=rollout.model, experiment=rollout.experiment, weight=weight,
                                      champion_version=champion_version,
                                      challenger_version=rollout.challenger_version)
                return {"data": {ROUTES_KEY: routing_yaml(table)}}

            self._update("configmap", self.target["routes_configmap"], change)
        elif self.mode == "gatewayAPI":  # routes select Services; the model config moves the version
            for kind in ("httproutes", "grpcroutes"):
                name = self.target.get(kind[:-1])
                if name:
                    self._update(kind, name, lambda obj: _gateway_weights(obj, self.target, weight))
        else:
            self._update("virtualservices", self.target["virtualservice"],
                         lambda obj: _istio_weights(obj, self.target, weight))

    def _stable_version(self, rollout: Rollout, arm: str) -> int | None:
        """The version the arm's model config labels `stable` now (None when unmanaged or unreadable)."""
        from kubernetes.client import ApiException

        from ingot.serving.config import parse_model_server_config

        name = (self.target.get("model_configmaps") or {}).get(arm)
        if not name:
            return None
        try:
            text = (self._get("configmap", name).get("data") or {}).get(MODEL_CONFIG_KEY) or ""
            config = parse_model_server_config(text, source=f"ConfigMap {self.namespace}/{name}")
        except (ApiException, ConfigError):
            return None  # the write that follows reports the problem
        entries = [c for c in config.model_config_list.config if c.name == rollout.model]
        return int(entries[0].version_labels.get(STABLE_LABEL, 0)) or None if entries else None

    def _set_versions(self, rollout: Rollout, arm: str, versions: list[int], stable: int | None) -> None:
        """Serve exactly `versions`, every label on `stable` (None: a small server's config, no labels)."""
        name = (self.target.get("model_configmaps") or {}).get(arm)
        if not name:
            return  # versions managed elsewhere (e.g. a pipeline)

        def change(obj: dict[str, Any]) -> dict[str, Any]:
            from ingot.serving.config import (
                model_config_text,
                parse_model_server_config,
            )

            text = (obj.get("data") or {}).get(MODEL_CONFIG_KEY)
            if not text:
                raise ActuationError(f"ConfigMap {self.namespace}/{name} has no {MODEL_CONFIG_KEY} key")
            config = parse_model_server_config(text, source=f"ConfigMap {self.namespace}/{name}")
            entries = [c for c in config.model_config_list.config if c.name == rollout.model]
            if not entries:
                raise ActuationError(f"ConfigMap {self.namespace}/{name} does not configure model {rollout.model}")
            entry = entries[0]
            entry.model_version_policy.specific.ClearField("versions")
            entry.model_version_policy.specific.versions.extend(sorted(set(versions)))
            labels = list(entry.version_labels) or [STABLE_LABEL]
            entry.ClearField("version_labels")
            if stable is not None:
                for label in labels:
                    entry.version_labels[label] = int(stable)
            return {"data": {MODEL_CONFIG_KEY: model_config_text(config)}}

        self._update("configmap", name, change)

    def _update(self, kind: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Read, check ownership, change, patch with the read resourceVersion; on 409 start over."""
        from kubernetes.client import ApiException

        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                obj = self._get(kind, name)
                self._check_owned(kind, name, obj)
                body = change(copy.deepcopy(obj))
                body.setdefault("metadata", {})["resourceVersion"] = obj["metadata"].get("resourceVersion")
                self._patch(kind, name, body)
                return
            except ApiException as err:
                if err.status == 409 and attempt < CONFLICT_ATTEMPTS:
                    log.info("%s %s/%s changed under us (409); re-reading (attempt %d)", kind, self.namespace,
                             name, attempt)
                    continue
                raise ActuationError(_api_message(err, kind, self.namespace, name)) from None
        raise ActuationError(f"{kind} {self.namespace}/{name} kept changing; gave up after {CONFLICT_ATTEMPTS} tries")

    def _get(self, kind: str, name: str) -> dict[str, Any]:
        if kind == "configmap":
            api_client = self.core.api_client
            obj = self.core.read_namespaced_config_map(name, self.namespace)
            return api_client.sanitize_for_serialization(obj)
        group, version = self._group_version(kind)
        return self.custom.get_namespaced_custom_object(group, version, self.namespace, kind, name)

    def _patch(self, kind: str, name: str, body: dict[str, Any]) -> None:
        if kind == "configmap":
            self.core.patch_namespaced_config_map(name, self.namespace, body)
            return
        group, version = self._group_version(kind)
        self.custom.patch_namespaced_custom_object(group, version, self.namespace, kind, name, body)

    def _group_version(self, kind: str) -> tuple[str, str]:
        if kind in ("httproutes", "grpcroutes"):
            return GATEWAY_GROUP, GATEWAY_VERSION
        api_version = self.target.get("istio_api_version", f"{ISTIO_GROUP}/v1")
        group, _, version = api_version.partition("/")
        return group, version

    def _check_owned(self, kind: str, name: str, obj: dict[str, Any]) -> None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get("app.kubernetes.io/instance") != self.release or labels.get("app.kubernetes.io/part-of") != "ingot":
            raise ActuationError(
                f"{kind} {self.namespace}/{name} is not labelled as owned by release {self.release} "
                "(app.kubernetes.io/instance, app.kubernetes.io/part-of: ingot); refusing to change it"
            )


def _gateway_weights(obj: dict[str, Any], target: dict[str, Any], weight: int) -> dict[str, Any]:
    """The weighted rule is the one whose backendRefs name both Services (pin rules name one)."""
    champion, challenger = target["champion_service"], target["challenger_service"]
    rules = copy.deepcopy((obj.get("spec") or {}).get("rules") or [])
    found = False
    for rule in rules:
        refs = rule.get("backendRefs") or []
        names = {ref.get("name") for ref in refs}
        if champion in names and challenger in names:
            for ref in refs:
                ref["weight"] = 100 - weight if ref.get("name") == champion else weight
            found = True
    if not found:
        raise ActuationError(
            f"{obj.get('kind', 'route')} {obj['metadata'].get('name')} has no rule with backendRefs to both "
            f"{champion} and {challenger}; deploy the chart with challenger.enabled"
        )
    return {"spec": {"rules": rules}}


def _istio_weights(obj: dict[str, Any], target: dict[str, Any], weight: int) -> dict[str, Any]:
    """Each `split-*` route: champion 100 - w, challenger w (a weight-0 destination is left out,
    as the chart renders it)."""
    champion, challenger = target["champion_host"], target["challenger_host"]
    http = copy.deepcopy((obj.get("spec") or {}).get("http") or [])
    found = False
    for route in http:
        if not str(route.get("name", "")).startswith("split-"):
            continue
        destinations = route.get("route") or []
        port = next((d["destination"].get("port") for d in destinations if d.get("destination")), None)
        new = []
        for host, share in ((champion, 100 - weight), (challenger, weight)):
            if share > 0:
                destination: dict[str, Any] = {"host": host}
                if port is not None:
                    destination["port"] = port
                new.append({"destination": destination, "weight": share})
        route["route"] = new
        found = True
    if not found:
        raise ActuationError(f"VirtualService {obj['metadata'].get('name')} has no split-* routes to reweight")
    return {"spec": {"http": http}}


def _api_message(err: Any, kind: str, namespace: str, name: str) -> str:
    if err.status == 404:
        return f"{kind} {namespace}/{name} not found; check the rollout target (is the chart's traffic mode right?)"
    if err.status == 403:
        return (f"forbidden to change {kind} {namespace}/{name}: the controller's ServiceAccount lacks get/patch on it "
                "(the chart's rollout Role grants exactly the objects of its release)")
    if err.status == 409:
        return f"{kind} {namespace}/{name} kept changing (409 conflicts); gave up after {CONFLICT_ATTEMPTS} tries"
    return f"Kubernetes API error {err.status} on {kind} {namespace}/{name}: {err.reason}"
