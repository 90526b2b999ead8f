"""gateway.capture: off by default; on, the routing table carries the capture block the gateway
accepts, the store is an object-store URL (credentials from a Secret, never in the spec) or a PVC."""

from __future__ import annotations

import pytest
from helm_python import HelmError

from ingot.capture.policy import CapturePolicy
from ingot.gateway.routing import parse

INGOT = {"champion": {"version": 3}, "traffic": {"mode": "ingot"}}


def _routes(rendered):
    return parse(rendered.get("ConfigMap", "ingot-gateway-routes")["data"]["routes.yaml"])


def _container(rendered):
    return rendered.get("Deployment", "ingot-gateway")["spec"]["template"]["spec"]["containers"][0]


def test_capture_is_off_by_default(render_values):
    rendered = render_values(INGOT)
    assert _routes(rendered).capture is None
    assert "INGOT_CAPTURE_URL" not in {e["name"] for e in _container(rendered)["env"]}


def test_capture_to_s3_with_credentials_from_a_secret(render_values):
    rendered = render_values({**INGOT, "gateway": {"capture": {
        "enabled": True, "sample": 0.25, "maxBytes": "5GiB", "retentionDays": 14, "url": "s3://captures/digits",
        "credentials": {"existingSecret": "capture-s3"}}}})
    assert _routes(rendered).capture == CapturePolicy(sample=0.25, max_bytes=5 << 30, retention_days=14.0)
    container = _container(rendered)
    env = {e["name"]: e for e in container["env"]}
    assert env["INGOT_CAPTURE_URL"]["value"] == "s3://captures/digits"
    assert container["envFrom"] == [{"secretRef": {"name": "capture-s3"}}]
    assert "capture" not in {m["name"] for m in container["volumeMounts"]}


def test_capture_to_a_pvc(render_values):
    rendered = render_values({**INGOT, "gateway": {"capture": {"enabled": True, "pvcClaimName": "captures"}}})
    container = _container(rendered)
    assert {e["name"]: e.get("value") for e in container["env"]}["INGOT_CAPTURE_URL"] == "/var/lib/ingot/capture"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["capture"]["mountPath"] == "/var/lib/ingot/capture"
    volumes = {v["name"]: v for v in rendered.get("Deployment", "ingot-gateway")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["capture"]["persistentVolumeClaim"] == {"claimName": "captures"}


def test_capture_without_a_store_is_refused_by_name(render_values):
    with pytest.raises(HelmError, match="gateway.capture.enabled needs"):
        render_values({**INGOT, "gateway": {"capture": {"enabled": True}}})
