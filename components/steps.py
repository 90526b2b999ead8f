"""The Kubeflow glue: what each component body calls. Each takes artifact paths and plain JSON
values and returns plain JSON values, so a component body is a few lines of wiring and all of
this runs (and is tested) without kfp. The steps themselves are `ingot.retrain.steps`' and
`ingot.export`'s functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingot import settings, storage

if TYPE_CHECKING:
    from ingot.evaluate.gate import GateThresholds
    from ingot.evaluate.record import EvaluationRecord
    from ingot.export.publishing import PublishedVersion
    from ingot.registry.records import ModelVersion
    from ingot.train.config import TrainConfig


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.atomic_write(path, text)


def ingest_step(
    dataset_uri: str, config: TrainConfig, dataset_dir: str | os.PathLike[str], report_html: str | os.PathLike[str]
) -> dict[str, Any]:
    """Ingest into `dataset_dir` (the Dataset artifact) and write the HTML data report; returns
    the artifact's metadata (data hash, split sizes, classes, shards)."""
    from ingot.reports import data_report_html
    from ingot.retrain.config import resolve_dataset
    from ingot.retrain.steps import ingest

    uri = resolve_dataset(dataset_uri, config)
    ingested = ingest(uri, dataset_dir, config)
    artifact = ingested.artifact
    _write_text(Path(report_html), data_report_html(ingested.report, artifact, config.image_size))
    return {
        "source": uri,
        "data_hash": artifact.content_hash,
        "class_names": list(artifact.class_names),
        "num_classes": len(artifact.class_names),
        # every split, a dataset version's production_holdout included
        "split_sizes": {name: len(part) for name, part in artifact.all_items()},
        "skipped_files": len(ingested.report.skipped),
        "format": artifact.manifest["format"],
        "shards": {name: len(part.files) for name, part in artifact.all_items()},
    }


def built_dataset_source(path: str | os.PathLike[str] | None) -> str | None:
    """The build-data step's artifact as the dataset to ingest, when it holds a dataset version;
    None when the run has no production policy (the artifact then holds only a note)."""
    from ingot.data.records import MANIFEST_NAME

    if path is None or not (Path(path) / MANIFEST_NAME).is_file():
        return None
    return os.fspath(path)


@dataclass
class ClusterTraining:
    """Where a multi-worker train step runs its TFJob: the artifacts' object-storage URIs (the
    workers read and write them directly), the image, and per-worker placement."""

    dataset_uri: str
    model_uri: str
    image: str
    namespace: str
    run_id: str
    gpus_per_worker: int = 1
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    cpu_request: str = "4"
    memory_request: str = "16Gi"


def in_cluster() -> bool:
    """True inside a Kubernetes pod (the service account's API host is in the environment)."""
    return settings.in_kubernetes()


def pod_namespace(default: str = "kubeflow") -> str:
    """The namespace this pod runs in (its service account's), where the TFJob is created."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.is_file() else default


def train_with_tfjob(cluster: ClusterTraining, config: TrainConfig, model_dir: str | os.PathLike[str], *, api: Any = None,
                     poll_s: float = 10.0) -> dict[str, Any]:
    """Run the multi-worker training as a TFJob and copy the chief's model into `model_dir`."""
    from ingot.train.tfjob import (
        TFJobSpec,
        collect_model,
        job_name,
        run_tfjob,
        tfjob_manifest,
    )

    staging = f"{cluster.model_uri.rstrip('/')}-chief"
    spec = TFJobSpec(
        name=job_name("ingot-train", cluster.run_id), namespace=cluster.namespace, image=cluster.image,
        dataset_uri=cluster.dataset_uri, model_uri=staging, backup_uri=f"{staging}-backup",
        config=config.to_dict(), workers=config.workers, gpus_per_worker=cluster.gpus_per_worker,
        gpu_resource=cluster.gpu_resource, node_selector=dict(cluster.node_selector or {}),
        tolerations=list(cluster.tolerations or []), cpu_request=cluster.cpu_request,
        memory_request=cluster.memory_request, labels={"ingot.dev/pipeline-run": job_name("run", cluster.run_id)},
    )
    if api is None:
        from kubernetes import client
        from kubernetes import config as kube_config

        kube_config.load_incluster_config()
        api = client.CustomObjectsApi()
    job = run_tfjob(api, tfjob_manifest(spec), poll_s=poll_s)
    collect_model(staging, os.fspath(model_dir))
    return job


def train_step(
    dataset_dir: str | os.PathLike[str], config: TrainConfig, model_dir: str | os.PathLike[str],
    curves_html: str | os.PathLike[str], *, cluster: ClusterTraining | None = None,
) -> dict[str, Any]:
    """Train on the Dataset artifact; writes the Model artifact and the training-curves page and
    returns the Model artifact's metadata. With `config.workers > 1` the training runs as a
    TFJob when `cluster` is given (in a pod), else as local worker processes."""
    from ingot.reports import training_curves_html
    from ingot.retrain.steps import train

    def on_cluster(config: TrainConfig, model_dir: str) -> object:
        assert cluster is not None
        return train_with_tfjob(cluster, config, model_dir)

    trained = train(dataset_dir, config, model_dir, cluster=on_cluster if cluster is not None else None)
    summary = trained.summary
    _write_text(Path(curves_html), training_curves_html(summary["history"], best_epoch=summary["best_epoch"]))
    return {
        "framework": "keras",
        "architecture": config.architecture,
        "image_size": list(config.image_size),
        "class_names": summary["class_names"],
        "data_hash": summary["data_hash"],
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "best_metrics": summary["best_metrics"],
        "duration_s": summary["duration_s"],
        "gpu_count": summary["hardware"].get("gpu_count"),
    }


@dataclass
class EvaluateStepResult:
    """What the evaluate component reports: the gate's verdict and the metrics the Kubeflow UI
    renders (scalars, confusion matrix), and the record it wrote."""

    blessed: bool
    summary: str
    scalars: dict[str, float]
    class_names: list[str]
    confusion_matrix: list[list[int]]
    record: EvaluationRecord


def evaluate_step(
    dataset_dir: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    config: TrainConfig,
    thresholds: GateThresholds,
    *,
    model_name: str,
    registry_url: str | None,
    pipeline_run_id: str | None,
    evaluation_json: str | os.PathLike[str],
    report_html: str | os.PathLike[str],
    serving_model_dir: str | os.PathLike[str],
) -> EvaluateStepResult:
    """Evaluate on the held-out test split against the gate and the registry's champion.

    Writes the evaluation record (what register/reject store in the registry) and the evaluation
    report; a blessed model is also exported to `serving_model_dir` as the serving SavedModel
    with the record's model card, so publishing (and any retry of it) only copies those bytes;
    beside it goes the int8 `model.tflite` when it holds up against the float model (the card's
    `int8` section says either way).
    """
    from ingot.data.records import open_dataset_artifact
    from ingot.export.saved_model import export_saved_model
    from ingot.reports import evaluation_html
    from ingot.retrain.registry import open_registry
    from ingot.retrain.steps import evaluate, int8_plan
    from ingot.train.artifact import load_trained

    splits = open_dataset_artifact(os.fspath(dataset_dir))
    trained = load_trained(model_dir)
    from ingot.retrain.champion import find_champion

    with open_registry(registry_url) as registry:
        # Its SavedModel is read from the model repository (artifact_uri), re-scored on our test rows.
        champion = find_champion(registry, model_name)
    evaluation = evaluate(trained.model, splits, config, thresholds, model_name=model_name,
                          training_summary=trained.summary, champion=champion,
                          pipeline_run_id=pipeline_run_id)
    record = evaluation.record
    record.write(evaluation_json)
    _write_text(Path(report_html), evaluation_html(record))
    if record.blessed:
        export_saved_model(trained.model, serving_model_dir, class_names=record.class_names,
                           image_size=config.image_size, model_card=record.model_card(),
                           warmup_batch_sizes=config.warmup_batch_sizes,
                           reference_images=evaluation.validation.images,
                           int8=int8_plan(splits, config, thresholds, evaluation))
    return EvaluateStepResult(
        blessed=record.blessed,
        summary=evaluation.decision.summary(),
        scalars=record.scalars(),
        class_names=record.class_names,
        confusion_matrix=[[int(c) for c in row] for row in record.metrics["confusion_matrix"]],
        record=record,
    )


def publish_step(serving_model_dir: str | os.PathLike[str], repository: str, model_name: str) -> PublishedVersion:
    """Publish the evaluate step's export into the model repository (parameter, else
    $INGOT_MODEL_REPOSITORY); a retry returns the version it already published."""
    from ingot.export.publishing import publish

    return publish(serving_model_dir, settings.required_model_repository(repository), model_name)


def register_step(
    evaluation_json: str | os.PathLike[str],
    *,
    registry_url: str | None,
    model_name: str,
    version: int,
    artifact_uri: str,
    model_sha256: str,
    pipeline_run_id: str | None,
) -> ModelVersion:
    """Register a published version with the evaluation record's lineage (see retrain.register)."""
    from ingot.evaluate.record import EvaluationRecord
    from ingot.retrain.registry import open_registry, register

    record = EvaluationRecord.read(evaluation_json)
    record.model_name = model_name or record.model_name
    record.pipeline_run_id = pipeline_run_id or record.pipeline_run_id
    with open_registry(registry_url) as registry:
        return register(registry, record, version=version, artifact_uri=artifact_uri, model_sha256=model_sha256)


def reject_step(
    evaluation_json: str | os.PathLike[str], *, registry_url: str | None, model_name: str,
    pipeline_run_id: str | None,
) -> ModelVersion:
    """Record a model the gate rejected, with its reasons (idempotent per pipeline run)."""
    from ingot.evaluate.record import EvaluationRecord
    from ingot.retrain.registry import open_registry, reject

    record = EvaluationRecord.read(evaluation_json)
    record.model_name = model_name or record.model_name
    record.pipeline_run_id = pipeline_run_id or record.pipeline_run_id
    with open_registry(registry_url) as registry:
        return reject(registry, record)
