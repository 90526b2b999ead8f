"""Multi-worker training on a cluster: a TFJob (kubeflow.org/v1, the Kubeflow Training Operator)
submitted, watched and collected through the official `kubernetes` client.

The operator starts N worker pods and gives each its TF_CONFIG; each runs the same worker entry
point as local multi-worker training (`python -m ingot.train.distributed`), reading the Dataset
artifact from object storage and resuming from its BackupAndRestore folder when restarted. Worker
0 (the chief) writes the Model artifact to a staging URI that the pipeline's train step copies
into its own output.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingot import settings
from ingot.errors import IngotError

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "tfjobs", "TFJob"
CONTAINER_NAME = "tensorflow"  # the operator finds the TensorFlow container by this name
DEFAULT_PORT = 2222  # the operator's default tfjob-port
TERMINAL = ("Succeeded", "Failed")


class TrainingJobError(IngotError):
    """The TFJob failed or could not be run; the message carries the job's own reason."""


@dataclass
class TFJobSpec:
    """What one multi-worker training job needs; everything else is derived."""

    name: str
    namespace: str
    image: str
    dataset_uri: str
    model_uri: str
    backup_uri: str
    config: dict[str, Any]
    workers: int = 2
    gpus_per_worker: int = 1
    gpu_resource: str = "nvidia.com/gpu"
    cpu_request: str = "4"
    memory_request: str = "16Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    service_account: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    backoff_limit: int = 3


def job_name(prefix: str, run_id: str) -> str:
    """A DNS-1123 name for a pipeline run's TFJob (Kubernetes caps names at 63 characters)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{run_id}".lower()).strip("-")
    return cleaned[:63].rstrip("-") or "ingot-train"


def tfjob_manifest(spec: TFJobSpec) -> dict[str, Any]:
    """The TFJob for `spec`: `workers` Worker replicas (worker 0 is the chief), each requesting
    the GPUs, CPU and memory given, with the node selector and tolerations, restarted by the
    operator on retryable exit codes (preemption, OOM kill) so BackupAndRestore resumes them."""
    if spec.workers < 1:
        raise TrainingJobError(f"workers={spec.workers}: a TFJob needs at least one worker")
    config = {**spec.config, "distribution": "multi_worker", "workers": spec.workers}
    config = {key: value for key, value in config.items() if value is not None and key != "backup_dir"}
    resources: dict[str, Any] = {"requests": {"cpu": spec.cpu_request, "memory": spec.memory_request}}
    if spec.gpus_per_worker > 0:
        resources["requests"][spec.gpu_resource] = str(spec.gpus_per_worker)
        resources["limits"] = {spec.gpu_resource: str(spec.gpus_per_worker)}
    container = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "command": ["python3", "-m", "ingot.train.distributed",
                    "--dataset", spec.dataset_uri, "--model-dir", spec.model_uri,
                    "--backup-dir", spec.backup_uri, "--config-json", json.dumps(config, sort_keys=True)],
        "ports": [{"name": "tfjob-port", "containerPort": DEFAULT_PORT}],
        "resources": resources,
        "env": [{"name": settings.TF_LOG_LEVEL_ENV, "value": settings.DEFAULT_TF_LOG_LEVEL}],
    }
    pod_spec: dict[str, Any] = {"containers": [container]}
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
    labels = {"app.kubernetes.io/name": "ingot", "app.kubernetes.io/component": "training", **spec.labels}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": spec.backoff_limit},
            "tfReplicaSpecs": {
                "Worker": {
                    "replicas": spec.workers,
                    "restartPolicy": "ExitCode",
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                }
            },
        },
    }


def conditions(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list((job.get("status") or {}).get("conditions") or [])


def run_tfjob(
    api: Any,
    manifest: dict[str, Any],
    *,
    poll_s: float = 5.0,
    timeout_s: float = 24 * 3600,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Submit `manifest` through `api` (a kubernetes.client.CustomObjectsApi), report each new
    condition as it appears, and return the finished job once it has Succeeded; raise
    TrainingJobError with the job's own reason and message when it Failed, or on timeout.

    Resubmitting a run whose job already exists (a retried step) watches that job instead."""
    from kubernetes.client.exceptions import ApiException

    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
        report(f"submitted TFJob {namespace}/{name} ({_workers(manifest)} workers)")
    except ApiException as err:
        if err.status != 409:
            raise TrainingJobError(f"cannot submit TFJob {namespace}/{name}: {err.status} {err.reason}; is the "
                                   "Kubeflow Training Operator installed and may this service account create tfjobs?") from err
        report(f"TFJob {namespace}/{name} exists already (a retried step): watching it")
    seen: set[tuple[str, str, str]] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as err:
            raise TrainingJobError(f"cannot read TFJob {namespace}/{name}: {err.status} {err.reason}") from err
        for condition in conditions(job):
            key = (condition.get("type", ""), condition.get("status", ""), condition.get("reason", ""))
            if key not in seen:
                seen.add(key)
                message = condition.get("message", "")
                report(f"TFJob {name}: {key[0]}={key[1]}" + (f" ({key[2]}: {message})" if key[2] or message else ""))
        state = terminal_state(job)
        if state == "Succeeded":
            return job
        if state == "Failed":
            failed = next(c for c in reversed(conditions(job)) if c.get("type") == "Failed")
            raise TrainingJobError(f"TFJob {namespace}/{name} failed: {failed.get('reason') or 'no reason given'}: "
                                   f"{failed.get('message') or 'no message'}")
        if time.monotonic() > deadline:
            raise TrainingJobError(f"TFJob {namespace}/{name} did not finish within {timeout_s:.0f}s")
        time.sleep(poll_s)


def terminal_state(job: dict[str, Any]) -> str | None:
    """"Succeeded" or "Failed" once the job's condition of that type is True, else None."""
    for condition in reversed(conditions(job)):
        if condition.get("type") in TERMINAL and str(condition.get("status")) == "True":
            return condition["type"]
    return None


def _workers(manifest: dict[str, Any]) -> int:
    return int(manifest["spec"]["tfReplicaSpecs"]["Worker"]["replicas"])


def collect_model(staging_uri: str, local_dir: str) -> None:
    """Copy the chief's Model artifact from `staging_uri` (gs://, s3://, a shared path) into the
    step's own output directory, through tf.io.gfile."""
    import tensorflow as tf

    from ingot.train.artifact import MODEL_FILE, TRAINING_JSON

    tf.io.gfile.makedirs(local_dir)
    for name in (MODEL_FILE, TRAINING_JSON):
        source = f"{staging_uri.rstrip('/')}/{name}"
        if not tf.io.gfile.exists(source):
            raise TrainingJobError(f"the TFJob succeeded but its chief wrote no {name} to {staging_uri}")
        tf.io.gfile.copy(source, f"{local_dir.rstrip('/')}/{name}", overwrite=True)
