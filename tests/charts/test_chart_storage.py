"""Model storage: a PVC (existing or created), gs:// read directly, or a pre-pull into an emptyDir."""

from __future__ import annotations

import subprocess

import pytest
from helm_python import HelmError

from .tf_serving_text import parse_model_server_config


def _pod(rendered, variant="champion"):
    return rendered.get("Deployment", f"ingot-{variant}")["spec"]["template"]["spec"]


def _base_path(rendered, variant="champion"):
    text = rendered.get("ConfigMap", f"ingot-{variant}-model-config")["data"]["models.config"]
    return parse_model_server_config(text).model_config_list.config[0].base_path


def test_created_pvc_is_kept_on_uninstall_and_mounted_read_only(minimal):
    pvc = minimal.get("PersistentVolumeClaim", "ingot-models")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    pod = _pod(minimal)
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "ingot-models", "readOnly": True}} in pod["volumes"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert _base_path(minimal) == "/models/ingot"


def test_existing_claim_is_used_not_created(gpu):
    assert gpu.of_kind("PersistentVolumeClaim") == []
    volume = next(v for v in _pod(gpu)["volumes"] if v["name"] == "models")
    assert volume["persistentVolumeClaim"]["claimName"] == "ingot-model-repository"


def test_pre_pull_copies_the_pinned_version_before_the_server_starts(prepull):
    pod = _pod(prepull)
    (init,) = pod["initContainers"]
    assert init["name"] == "pre-pull"
    assert init["image"] == "rclone/rclone:1.68.2"
    env = {e["name"]: e.get("value") for e in init["env"]}
    assert env["SOURCE_PATH"] == "ingot-models/repository/ingot/7"  # <base>/<model>/<pinned version>
    assert env["RCLONE_CONFIG_SRC_TYPE"] == "s3"
    assert env["RCLONE_CONFIG_SRC_ENDPOINT"] == "https://minio.storage.svc:9000"
    script = init["args"][0]
    assert 'dest="/models/ingot/7"' in script
    assert 'rclone copy --checksum' in script and "sha256sum -c MANIFEST.sha256" in script
    # Both containers share the emptyDir; the server reads it read-only at TF Serving's layout.
    assert {"name": "models", "emptyDir": {"sizeLimit": "5Gi"}} in pod["volumes"]
    assert {"name": "models", "mountPath": "/models"} in init["volumeMounts"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert _base_path(prepull) == "/models/ingot"


def test_pre_pull_script_is_valid_shell(prepull):
    script = _pod(prepull)["initContainers"][0]["args"][0]
    assert subprocess.run(["sh", "-n", "-c", script], capture_output=True).returncode == 0


def test_pre_pull_reads_credentials_from_files_not_the_pod_spec(prepull):
    pod = _pod(prepull)
    init = pod["initContainers"][0]
    assert all("valueFrom" not in e for e in init["env"])
    volume = next(v for v in pod["volumes"] if v["name"] == "object-store-credentials")
    assert volume["secret"]["secretName"] == "ingot-object-store"
    assert [i["key"] for i in volume["secret"]["items"]] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert 'AWS_ACCESS_KEY_ID="$(cat /var/run/secrets/ingot/object-store/AWS_ACCESS_KEY_ID)"' in init["args"][0]
    # The server never sees the credentials.
    assert "object-store-credentials" not in {m["name"] for m in pod["containers"][0]["volumeMounts"]}


def test_pre_pulled_pods_roll_on_a_version_change(prepull, render_scenario):
    annotations = prepull.get("Deployment", "ingot-champion")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["ingot.dev/model-version"] == "7"
    # No in-place reload: the emptyDir holds only the pinned version.
    assert "--model_config_file_poll_wait_seconds=0" in _pod(prepull)["containers"][0]["args"]


def test_gs_is_read_directly_with_a_mounted_service_account_key(render_values):
    rendered = render_values({"storage": {"mode": "objectStore", "objectStore": {
        "uri": "gs://ingot-models/repo/", "credentials": {"existingSecret": "gcs-key"}}},
        # Issue 16: egress only to the object store endpoints named.
        "networkPolicy": {"egress": {"objectStore": {"peers": [{"ipBlock": {"cidr": "199.36.153.8/30"}}]}}}})
    assert _base_path(rendered) == "gs://ingot-models/repo/ingot"
    pod = _pod(rendered)
    assert "initContainers" not in pod
    server = pod["containers"][0]
    assert {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/run/secrets/ingot/object-store/key.json"} in server["env"]
    assert {"name": "object-store-credentials", "mountPath": "/var/run/secrets/ingot/object-store", "readOnly": True} in server["volumeMounts"]
    assert rendered.of_kind("PersistentVolumeClaim") == []
    assert "--model_config_file_poll_wait_seconds=30" in server["args"]


@pytest.mark.parametrize(
    ("object_store", "message"),
    [
        ({"uri": "s3://models"}, "the official TF Serving images \\(>= 2.7\\) cannot read s3://"),
        ({"uri": ""}, "storage.objectStore.uri must be a gs://bucket\\[/prefix\\] or s3://bucket\\[/prefix\\] URI"),
    ],
)
def test_object_store_misconfigurations_are_explained(render_values, object_store, message):
    with pytest.raises(HelmError, match=message):
        render_values({"storage": {"mode": "objectStore", "objectStore": object_store}})
