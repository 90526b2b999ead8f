"""The TFJob a multi-worker train step submits: its manifest, checked structurally (the project
ships no TFJob CRD schema) with each worker's pod template checked against the official Pod
schema, and the submit / stream conditions / wait / fail / collect
logic against kmock, a loopback server that answers like the Kubernetes API, with a thread
playing the Training Operator."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from ingot.train.tfjob import (
    CONTAINER_NAME,
    TFJobSpec,
    TrainingJobError,
    job_name,
    run_tfjob,
    tfjob_manifest,
)

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _spec(**changes) -> TFJobSpec:
    values = dict(
        name="ingot-train-run-1", namespace="team-a", image="ghcr.io/ingot/ingot:0.1.0",
        dataset_uri="gs://bucket/root/ingest/dataset", model_uri="gs://bucket/root/train/model-chief",
        backup_uri="gs://bucket/root/train/model-chief-backup", config={"epochs": 5, "checkpoint_dir": None},
        workers=3, gpus_per_worker=2, node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
        tolerations=[GPU_TOLERATION],
    )
    values.update(changes)
    return TFJobSpec(**values)


def test_manifest_structure():
    """Checked: apiVersion/kind/metadata; only Worker replicas, N of them (worker 0 is the chief);
    restartPolicy ExitCode (the operator's retryable codes) and a backoff limit; one container
    named `tensorflow` (the name the operator looks for) with the port it injects into TF_CONFIG;
    its command runs the worker entry point on the artifact URIs with the multi-worker config;
    GPU requests equal limits; node selector and tolerations on every worker pod."""
    manifest = tfjob_manifest(_spec())
    assert manifest["apiVersion"] == "kubeflow.org/v1" and manifest["kind"] == "TFJob"
    assert manifest["metadata"] == {"name": "ingot-train-run-1", "namespace": "team-a",
                                    "labels": {"app.kubernetes.io/name": "ingot",
                                               "app.kubernetes.io/component": "training"}}
    replicas = manifest["spec"]["tfReplicaSpecs"]
    assert list(replicas) == ["Worker"]
    worker = replicas["Worker"]
    assert worker["replicas"] == 3 and worker["restartPolicy"] == "ExitCode"
    assert manifest["spec"]["runPolicy"]["backoffLimit"] == 3
    pod = worker["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == CONTAINER_NAME == "tensorflow"
    assert container["ports"] == [{"name": "tfjob-port", "containerPort": 2222}]
    command = container["command"]
    assert command[:3] == ["python3", "-m", "ingot.train.distributed"]
    arguments = dict(zip(command[3::2], command[4::2]))
    assert arguments["--dataset"] == "gs://bucket/root/ingest/dataset"
    assert arguments["--model-dir"] == "gs://bucket/root/train/model-chief"
    assert arguments["--backup-dir"] == "gs://bucket/root/train/model-chief-backup"
    assert json.loads(arguments["--config-json"]) == {"epochs": 5, "distribution": "multi_worker", "workers": 3}
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["tolerations"] == [GPU_TOLERATION]

    cpu_only = tfjob_manifest(_spec(gpus_per_worker=0, node_selector={}, tolerations=[]))
    pod = cpu_only["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert "limits" not in pod["containers"][0]["resources"] and "nodeSelector" not in pod and "tolerations" not in pod
    with pytest.raises(TrainingJobError, match="at least one worker"):
        tfjob_manifest(_spec(workers=0))


def test_every_worker_pod_is_a_valid_pod_for_the_official_schema():
    """The TFJob CRD embeds a PodTemplateSpec per replica: the template, as a Pod, passes the
    official Kubernetes OpenAPI schema (kubernetes-validate, strict: no unknown fields)."""
    import kubernetes_validate

    version = kubernetes_validate.utils.latest_version()
    worker = tfjob_manifest(_spec())["spec"]["tfReplicaSpecs"]["Worker"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker-0", **worker["metadata"]},
           "spec": worker["spec"]}
    kubernetes_validate.validate(pod, version, strict=True)
    broken = {**pod, "spec": {**pod["spec"], "tolerations": [{"key": "x", "effect": "Sometimes", "colour": 1}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_the_manifest_parses_as_the_worker_command_line():
    from ingot.train.distributed import main

    command = tfjob_manifest(_spec())["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["command"]
    with pytest.raises(SystemExit) as exit_info:
        main([*command[3:], "--help"])
    assert exit_info.value.code == 0


def test_job_names_are_dns_labels():
    name = job_name("ingot-train", "ingot-retrain-20261129_ABC/" + "x" * 80)
    assert len(name) <= 63 and name == name.lower() and name.replace("-", "").isalnum()


@pytest.fixture
def kube():
    """A kmock KubernetesEmulator on a loopback port, served from a thread; yields an official
    `kubernetes` CustomObjectsApi pointed at it."""
    import kmock
    from kubernetes import client

    ready, box = threading.Event(), {}

    def serve() -> None:
        async def main() -> None:
            async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
                box["url"], box["stop"] = str(server.url).rstrip("/"), asyncio.Event()
                ready.set()
                await box["stop"].wait()

        box["loop"] = asyncio.new_event_loop()
        box["loop"].run_until_complete(main())
        box["loop"].close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10), "kmock did not start"
    configuration = client.Configuration()
    configuration.host = box["url"]
    api_client = client.ApiClient(configuration)
    yield client.CustomObjectsApi(api_client)
    api_client.close()
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(10)


def _operator(api, namespace, name, conditions, *, on_success=None):
    """Plays the Training Operator: once the job exists, appends its conditions one by one."""

    def run() -> None:
        from kubernetes.client.exceptions import ApiException

        for _ in range(200):
            try:
                api.get_namespaced_custom_object("kubeflow.org", "v1", namespace, "tfjobs", name)
                break
            except ApiException:
                time.sleep(0.02)
        shown = []
        for condition in conditions:
            if condition["type"] == "Succeeded" and on_success:
                on_success()
            shown.append({**condition, "status": "True"})
            api.patch_namespaced_custom_object_status(
                "kubeflow.org", "v1", namespace, "tfjobs", name, {"status": {"conditions": list(shown)}})
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_submit_stream_conditions_and_succeed(kube):
    manifest = tfjob_manifest(_spec())
    steps = [{"type": "Created", "reason": "TFJobCreated"}, {"type": "Running", "reason": "TFJobRunning"},
             {"type": "Succeeded", "reason": "TFJobSucceeded", "message": "TFJob team-a/ingot-train-run-1 successfully completed."}]
    operator = _operator(kube, "team-a", "ingot-train-run-1", steps)
    lines: list[str] = []
    job = run_tfjob(kube, manifest, poll_s=0.02, timeout_s=30, report=lines.append)
    operator.join(5)
    assert job["spec"] == manifest["spec"]  # what the server holds is what was submitted
    assert lines[0] == "submitted TFJob team-a/ingot-train-run-1 (3 workers)"
    assert [line.split(": ", 1)[1].split(" ")[0] for line in lines[1:]] == ["Created=True", "Running=True", "Succeeded=True"]

    # A retried step finds the job already there and watches it instead of failing.
    again: list[str] = []
    run_tfjob(kube, manifest, poll_s=0.02, timeout_s=5, report=again.append)
    assert "exists already" in again[0]


def test_a_failed_job_fails_with_its_own_reason(kube):
    manifest = tfjob_manifest(_spec(name="ingot-train-run-2"))
    steps = [{"type": "Created", "reason": "TFJobCreated"}, {"type": "Running", "reason": "TFJobRunning"},
             {"type": "Failed", "reason": "TFJobFailed",
              "message": "TFJob team-a/ingot-train-run-2 has failed because 1 Worker replica(s) failed."}]
    _operator(kube, "team-a", "ingot-train-run-2", steps)
    with pytest.raises(TrainingJobError, match=r"TFJob team-a/ingot-train-run-2 failed: TFJobFailed: TFJob "
                                               r"team-a/ingot-train-run-2 has failed because 1 Worker replica"):
        run_tfjob(kube, manifest, poll_s=0.02, timeout_s=30, report=lambda line: None)


def test_a_job_that_never_finishes_times_out(kube):
    with pytest.raises(TrainingJobError, match="did not finish within"):
        run_tfjob(kube, tfjob_manifest(_spec(name="ingot-train-run-3")), poll_s=0.02, timeout_s=0.2,
                  report=lambda line: None)


def test_the_train_step_collects_the_chiefs_model(kube, tmp_path):
    """train_with_tfjob: submits, waits, then copies what the chief wrote to the staging URI."""
    from components.steps import ClusterTraining, train_with_tfjob
    from ingot.train.config import TrainConfig

    cluster = ClusterTraining(dataset_uri=str(tmp_path / "dataset"), model_uri=str(tmp_path / "model"),
                              image="img:1", namespace="team-b", run_id="run-9", gpus_per_worker=1)
    staging = Path(f"{cluster.model_uri}-chief")

    def chief_writes_its_model() -> None:
        staging.mkdir()
        (staging / "model.keras").write_bytes(b"keras zip")
        (staging / "training.json").write_text("{}")

    _operator(kube, "team-b", "ingot-train-run-9",
              [{"type": "Created"}, {"type": "Running"}, {"type": "Succeeded"}], on_success=chief_writes_its_model)
    config = TrainConfig(distribution="multi_worker", workers=2)
    job = train_with_tfjob(cluster, config, tmp_path / "step-output", api=kube, poll_s=0.02)
    assert job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2
    assert (tmp_path / "step-output" / "model.keras").read_bytes() == b"keras zip"
    assert (tmp_path / "step-output" / "training.json").read_text() == "{}"
