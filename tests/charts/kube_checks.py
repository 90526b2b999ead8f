"""Checks shared by the chart and the kustomize tests: API schemas, CRD structure, Pod Security.

- Core kinds validate against the official OpenAPI-derived schemas `kubernetes-validate` ships, in
  strict mode (unknown fields are errors), for the oldest and newest Kubernetes versions we support.
- Custom resources (HTTPRoute, GRPCRoute, VirtualService, ServiceMonitor) are not in those schemas.
  Their published CRD schemas cannot be vendored into this repository, so CRD_STRUCTURE below spells
  out, from those CRDs, the structure of every field the chart emits (types, enums, ranges, required
  fields) with unknown fields rejected; anything outside it fails.
- `restricted_violations` implements the restricted Pod Security Standard (which includes baseline)
  as the Kubernetes documentation lists its controls.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate

OLDEST_K8S = "1.27"  # Chart.yaml kubeVersion floor
NEWEST_K8S = kubernetes_validate.utils.major_minor(kubernetes_validate.utils.latest_version())  # newest schemas shipped
K8S_VERSIONS = (OLDEST_K8S, NEWEST_K8S)


def validate_core(obj: dict[str, Any], version: str) -> None:
    """Raise with the failing path if obj is not valid for this Kubernetes version (strict)."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path)
        raise AssertionError(
            f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version} at {where}: {err.message}"
        ) from None
    except kubernetes_validate.SchemaNotFoundError as err:
        raise AssertionError(err.message) from None


# --- CRD structure -------------------------------------------------------------------------------

def _obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def _arr(items: dict[str, Any], max_items: int | None = None, min_items: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": items, "minItems": min_items}
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


_STR = {"type": "string"}
_DNS_LABEL = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_DNS_SUBDOMAIN = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", "maxLength": 253}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_HOSTNAME = {"type": "string", "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", "maxLength": 253}
_HEADER_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$", "maxLength": 256}
_METADATA = {"type": "object", "required": ["name", "namespace"],
             "properties": {"name": _DNS_SUBDOMAIN, "namespace": _DNS_LABEL,
                            "labels": {"type": "object", "additionalProperties": _STR},
                            "annotations": {"type": "object", "additionalProperties": _STR}}}

_PARENT_REF = _obj({"group": _STR, "kind": _STR, "namespace": _DNS_LABEL, "name": _DNS_SUBDOMAIN,
                    "sectionName": _DNS_SUBDOMAIN, "port": _PORT}, ("name",))
# A Service backend needs a port (the CRD's CEL rule); weight is 0..1,000,000 (0 = no traffic).
_BACKEND_REF = _obj({"group": {"const": ""}, "kind": {"const": "Service"}, "name": _DNS_SUBDOMAIN,
                     "namespace": _DNS_LABEL, "port": _PORT,
                     "weight": {"type": "integer", "minimum": 0, "maximum": 1000000}}, ("name", "port"))
_HEADER_MATCH = _obj({"type": {"enum": ["Exact", "RegularExpression"]}, "name": _HEADER_NAME,
                      "value": {"type": "string", "minLength": 1, "maxLength": 4096}}, ("name", "value"))
_ROUTE_COMMON = {"parentRefs": _arr(_PARENT_REF, 32, 1), "hostnames": _arr(_HOSTNAME, 16)}

_HTTP_ROUTE = _obj({
    **_ROUTE_COMMON,
    "rules": _arr(_obj({
        "name": _DNS_LABEL,
        "matches": _arr(_obj({
            "path": _obj({"type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                          "value": {"type": "string", "pattern": "^/", "maxLength": 1024}}, ("value",)),
            "headers": _arr(_HEADER_MATCH, 16),
            "method": {"enum": ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]},
        }), 64),
        "backendRefs": _arr(_BACKEND_REF, 16),
    }), 16, 1),
}, ("parentRefs",))

_GRPC_ROUTE = _obj({
    **_ROUTE_COMMON,
    "rules": _arr(_obj({
        "name": _DNS_LABEL,
        "matches": _arr(_obj({
            "method": _obj({"type": {"enum": ["Exact", "RegularExpression"]},
                            "service": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$", "maxLength": 1024},
                            "method": {"type": "string", "maxLength": 1024}}),
            "headers": _arr(_HEADER_MATCH, 16),
        }), 64),
        "backendRefs": _arr(_BACKEND_REF, 16),
    }), 16, 1),
}, ("parentRefs",))

_ISTIO_DESTINATION = _obj({"host": {"type": "string", "minLength": 1}, "subset": _STR,
                           "port": _obj({"number": _PORT}, ("number",))}, ("host",))
_STRING_MATCH = {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
                 "properties": {"exact": _STR, "prefix": _STR, "regex": _STR}}
_VIRTUAL_SERVICE = _obj({
    "hosts": _arr({"type": "string", "minLength": 1}, None, 1),
    "gateways": _arr({"type": "string", "minLength": 1}),
    "http": _arr(_obj({
        "name": _STR,
        "match": _arr(_obj({"name": _STR, "port": _PORT, "uri": _STRING_MATCH,
                            "headers": {"type": "object", "additionalProperties": _STRING_MATCH}})),
        "route": _arr(_obj({"destination": _ISTIO_DESTINATION,
                            "weight": {"type": "integer", "minimum": 0, "maximum": 100}}, ("destination",)), None, 1),
        "mirror": _ISTIO_DESTINATION,
        "mirrorPercentage": _obj({"value": {"type": "number", "minimum": 0, "maximum": 100}}, ("value",)),
    }, ("route",)), None, 1),
}, ("hosts",))

_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_LABEL_SELECTOR = _obj({"matchLabels": {"type": "object", "additionalProperties": _STR},
                        "matchExpressions": _arr({"type": "object"})})
_SERVICE_MONITOR = _obj({
    "selector": _LABEL_SELECTOR,
    "namespaceSelector": _obj({"any": {"type": "boolean"}, "matchNames": _arr(_DNS_LABEL)}),
    "targetLabels": _arr(_STR),
    "podTargetLabels": _arr(_STR),
    "jobLabel": _STR,
    "endpoints": _arr(_obj({"port": _STR, "path": {"type": "string", "pattern": "^/"}, "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION, "scrapeTimeout": _DURATION}), None, 1),
}, ("selector", "endpoints"))


def _resource(api_versions: list[str], kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {"apiVersion": {"enum": api_versions}, "kind": {"const": kind},
                           "metadata": _METADATA, "spec": spec}}


# security.istio.io AuthorizationPolicy (the fields the chart emits, from Istio's CRD).
_AUTHORIZATION_POLICY = _obj({
    "selector": _obj({"matchLabels": {"type": "object", "additionalProperties": _STR}}),
    "action": {"enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
    "rules": _arr(_obj({
        "to": _arr(_obj({"operation": _obj({
            "paths": _arr(_STR), "notPaths": _arr(_STR), "methods": _arr(_STR), "ports": _arr(_STR),
            "hosts": _arr(_STR)})})),
    })),
})

CRD_STRUCTURE: dict[str, dict[str, Any]] = {
    "AuthorizationPolicy": _resource(["security.istio.io/v1", "security.istio.io/v1beta1"], "AuthorizationPolicy",
                                     _AUTHORIZATION_POLICY),
    "HTTPRoute": _resource(["gateway.networking.k8s.io/v1"], "HTTPRoute", _HTTP_ROUTE),
    "GRPCRoute": _resource(["gateway.networking.k8s.io/v1"], "GRPCRoute", _GRPC_ROUTE),
    "VirtualService": _resource(["networking.istio.io/v1", "networking.istio.io/v1beta1"], "VirtualService", _VIRTUAL_SERVICE),
    "ServiceMonitor": _resource(["monitoring.coreos.com/v1"], "ServiceMonitor", _SERVICE_MONITOR),
}


def validate_custom(obj: dict[str, Any]) -> None:
    """Raise naming every structural error of a custom resource the chart emits."""
    schema = CRD_STRUCTURE.get(obj["kind"])
    if schema is None:
        raise AssertionError(f"no structure known for custom kind {obj['kind']}")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
        raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']}:\n" + "\n".join(lines))


def validate_any(obj: dict[str, Any], version: str) -> None:
    if obj["kind"] in CRD_STRUCTURE:
        validate_custom(obj)
    else:
        validate_core(obj, version)


# --- Pod Security Standard: restricted (includes baseline) ----------------------------------------

_BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                          "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
_SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                 "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                 "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                 "net.ipv4.tcp_keepalive_probes"}
_RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                            "projected", "secret"}
_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def restricted_violations(pod_meta: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """Every way this pod spec breaks the restricted Pod Security Standard (empty when compliant)."""
    out: list[str] = []
    psc = spec.get("securityContext") or {}
    containers = [("initContainers", c) for c in spec.get("initContainers", [])] + \
                 [("containers", c) for c in spec.get("containers", [])] + \
                 [("ephemeralContainers", c) for c in spec.get("ephemeralContainers", [])]

    # Baseline: host namespaces, HostProcess, hostPath, host ports, sysctls, AppArmor, SELinux, /proc.
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            out.append(f"spec.{field} must be unset or false")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("spec.securityContext.windowsOptions.hostProcess must be unset or false")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            out.append(f"spec.securityContext.sysctls {sysctl.get('name')} is not a safe sysctl")
    for key, value in (pod_meta.get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            out.append(f"annotation {key}={value}: AppArmor must be runtime/default or localhost/*")
    for where, sc in [("spec.securityContext", psc)] + [
        (f"{kind}[{c['name']}].securityContext", c.get("securityContext") or {}) for kind, c in containers
    ]:
        se = sc.get("seLinuxOptions") or {}
        if se.get("type", "") not in _SELINUX_TYPES or se.get("user") or se.get("role"):
            out.append(f"{where}.seLinuxOptions must keep a container type and no user/role")
        app_armor = sc.get("appArmorProfile") or {}
        if app_armor and app_armor.get("type") not in ("RuntimeDefault", "Localhost"):
            out.append(f"{where}.appArmorProfile.type must be RuntimeDefault or Localhost")

    # Restricted: volume types; non-root; seccomp.
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUME_TYPES:
            out.append(f"volume {volume['name']} uses {sorted(kinds - _RESTRICTED_VOLUME_TYPES)}, not allowed")
    if psc.get("runAsUser") == 0:
        out.append("spec.securityContext.runAsUser must not be 0")
    pod_non_root = psc.get("runAsNonRoot") is True
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ("RuntimeDefault", "Localhost"):
        out.append(f"spec.securityContext.seccompProfile.type {pod_seccomp} not allowed")

    for kind, c in containers:
        where = f"{kind}[{c['name']}]"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"{where}: privileged must be unset or false")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{where}: windowsOptions.hostProcess must be unset or false")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{where}: procMount must be Default")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                out.append(f"{where}: hostPort {port['hostPort']} not allowed")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot") is False or (not pod_non_root and sc.get("runAsNonRoot") is not True):
            out.append(f"{where}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            out.append(f"{where}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{where}: seccompProfile.type {seccomp} not allowed")
        if seccomp is None and pod_seccomp is None:
            out.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost (pod or container)")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{where}: capabilities must drop ALL")
        added = set(caps.get("add") or [])
        if added - {"NET_BIND_SERVICE"}:
            out.append(f"{where}: may only add NET_BIND_SERVICE, adds {sorted(added)}")
        if added - _BASELINE_CAPABILITIES:
            out.append(f"{where}: adds capabilities beyond baseline {sorted(added - _BASELINE_CAPABILITIES)}")
    return out
