"""The retraining steps (ingest -> train -> evaluate) as plain functions; export and publish are
`ingot.export`'s own.

Each step reads and writes directories: the Dataset artifact (TFRecord shards and manifest),
the Model artifact (`ingot.train.artifact`), the serving SavedModel. The pipeline's components
run them in separate pods and pass the directories as artifacts; `ingot train` chains them in one
process through exactly the same functions.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ingot.errors import DataError
from ingot.train.artifact import TrainOutput, fit_and_save, load_trained

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from ingot.data.records import DatasetArtifact
    from ingot.data.report import DataReport
    from ingot.data.splits import DatasetSplits
    from ingot.evaluate.gate import GateDecision, GateThresholds
    from ingot.evaluate.metrics import EvaluationReport
    from ingot.evaluate.record import EvaluationRecord
    from ingot.export.tflite import Int8Plan
    from ingot.retrain.champion import Champion
    from ingot.train.config import TrainConfig


@dataclass
class IngestOutput:
    splits: DatasetSplits  # in memory, as loaded
    report: DataReport
    artifact: DatasetArtifact  # what later steps read


@dataclass
class ValidationPredictions:
    """The validation split as the model saw it and what it answered, held in one place for
    whatever builds a reference from them (the drift baseline)."""

    images: np.ndarray  # uint8 [N, H, W, 3], decoded and resized as serving does
    labels: np.ndarray  # int64 [N]
    probabilities: np.ndarray  # float32 [N, C]


@dataclass
class EvaluationResult:
    """The evaluate step's result: the typed record (what the model card, the registry and the
    report are built from), the test report and gate decision, and the validation predictions."""

    record: EvaluationRecord
    report: EvaluationReport  # on the test split
    decision: GateDecision
    validation: ValidationPredictions
    test: ValidationPredictions | None = None  # the test rows and the float model's answers (int8 is judged on them)


def ingest(dataset_uri: str, output_dir: str | os.PathLike[str], config: TrainConfig) -> IngestOutput:
    """Load and validate `dataset_uri`, split it from the config's seed, and write the Dataset
    artifact into `output_dir`: the images themselves as TFRecord shards plus a manifest holding
    the data report, so later steps (other pods) need nothing else."""
    from ingot.data.records import is_dataset_artifact, write_dataset_artifact
    from ingot.data.sources import load_dataset
    from ingot.data.splits import split_dataset

    if is_dataset_artifact(str(dataset_uri)):
        return ingest_artifact(str(dataset_uri), output_dir)
    data, report = load_dataset(dataset_uri, min_images_per_class=config.min_images_per_class)
    splits = split_dataset(
        data,
        validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    splits.source = splits.source or str(dataset_uri)
    artifact = write_dataset_artifact(
        splits, os.fspath(output_dir), shard_bytes=config.shard_mb * 1024 * 1024, report=report.to_dict()
    )
    return IngestOutput(splits=splits, report=report, artifact=artifact)


def ingest_artifact(source: str, output_dir: str | os.PathLike[str]) -> IngestOutput:
    """A Dataset artifact given as the dataset (a dataset version `ingot data build` wrote): its
    splits are kept exactly as built (a fresh split would move production holdout rows into
    training), verified, and copied into `output_dir` so later steps read the run's own copy."""
    from ingot import storage
    from ingot.data.records import MANIFEST_NAME, open_dataset_artifact
    from ingot.data.report import DataReport, SizeStats

    artifact = open_dataset_artifact(source)  # verifies every shard and the content hash
    output = os.fspath(output_dir)
    storage.makedirs(output)
    for _name, part in artifact.all_items():
        for location, shard in zip(part.files, part.shards, strict=True):
            with storage.open_file(location, "rb") as handle:
                storage.atomic_write(storage.join(output, shard.path), handle.read(), durable=False)
    with storage.open_file(storage.join(source, MANIFEST_NAME), "rb") as handle:
        storage.atomic_write(storage.join(output, MANIFEST_NAME), handle.read())
    copied = open_dataset_artifact(output, verify=False)
    totals = {name: sum(part.class_counts().get(name, 0) for _, part in copied.all_items())
              for name in copied.class_names}
    sizes = (copied.report or {}).get("image_size") or {}  # the base dataset's, carried by the build

    def size(key: str) -> SizeStats:
        value = sizes.get(key)
        return SizeStats(**value) if isinstance(value, dict) else SizeStats(0, 0, 0.0)

    report = DataReport(source=source, kind="dataset_artifact", class_counts=totals, height=size("height"),
                        width=size("width"))
    return IngestOutput(splits=copied, report=report, artifact=copied)  # type: ignore[arg-type]


def train(
    dataset: str | os.PathLike[str] | DatasetArtifact, config: TrainConfig, model_dir: str | os.PathLike[str], *,
    cluster: Callable[[TrainConfig, str], object] | None = None, work_dir: str | os.PathLike[str] | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> TrainOutput:
    """Train on the Dataset artifact (opened, or its directory) and write the Model artifact to
    `model_dir`.

    With `config.workers > 1`: `cluster(config, model_dir)` runs the workers (a TFJob, in a pod)
    when given, else local worker processes do (logs under `work_dir`, a temporary folder when
    None); the chief's Model artifact is then read back."""
    from ingot.data.records import DatasetArtifact, open_dataset_artifact

    opened = dataset if isinstance(dataset, DatasetArtifact) else None
    location = opened.directory if opened is not None else os.fspath(dataset)
    if config.workers <= 1:
        return fit_and_save(opened or open_dataset_artifact(location), config, model_dir)
    if cluster is not None:
        cluster(config, os.fspath(model_dir))
        return load_trained(model_dir)
    from ingot.train.distributed import run_local_workers

    opened or open_dataset_artifact(location)  # fail here, naming a bad shard, not in N workers
    with tempfile.TemporaryDirectory(prefix="ingot-workers-") as scratch:
        local = run_local_workers(location, config, model_dir, work_dir=work_dir or scratch)
    say(f"{config.workers} workers finished in {local.seconds:.1f}s ({len(local.attempts)} attempt(s); "
        f"logs in {os.path.join(os.fspath(work_dir or scratch), 'workers')})")
    return load_trained(model_dir)


def predict_validation(model: keras.Model, dataset: tf.data.Dataset) -> ValidationPredictions:
    """Run `model` once over a deterministic (float 0..255 images, labels) dataset, keeping the
    images as uint8 (exact: evaluation pipelines do not augment). The test split goes through it
    too, so the champion can be re-scored on the same images."""
    import tensorflow as tf

    images, labels, probabilities = [], [], []
    for batch_images, batch_labels in dataset:
        output = model(tf.cast(batch_images, tf.float32), training=False)
        images.append(tf.cast(tf.round(batch_images), tf.uint8).numpy())
        labels.append(np.asarray(batch_labels).reshape(-1))
        probabilities.append(np.asarray(tf.cast(output, tf.float32)))
    if not labels:
        raise DataError("the split is empty; evaluation and the drift baseline need at least one image")
    return ValidationPredictions(
        images=np.concatenate(images), labels=np.concatenate(labels).astype(np.int64),
        probabilities=np.concatenate(probabilities, axis=0),
    )


def evaluate(
    model: keras.Model,
    splits: DatasetArtifact | DatasetSplits,
    config: TrainConfig,
    thresholds: GateThresholds,
    *,
    model_name: str,
    training_summary: dict[str, Any],
    champion_metrics: dict[str, Any] | None = None,
    champion: Champion | None = None,
    pipeline_run_id: str | None = None,
) -> EvaluationResult:
    """Per-class metrics on the held-out test split, the validation split's drift baseline, and the
    gate's decision (against the champion when its metrics are given), as one typed record. The
    drift baseline (`drift_baseline` in the model card) is what the drift monitor compares live
    traffic with."""
    from ingot.data.pipeline import make_tf_dataset
    from ingot.evaluate.drift import DriftBaseline
    from ingot.evaluate.gate import bless
    from ingot.evaluate.metrics import evaluate_predictions
    from ingot.evaluate.record import TRAINING_KEYS, EvaluationRecord

    if len(splits.test) == 0:
        raise DataError("the test split is empty; raise test_fraction so every model is judged on held-out data")
    common = {"image_size": config.image_size, "batch_size": config.batch_size, "training": False}
    test = predict_validation(model, make_tf_dataset(splits.test, **common))
    report = evaluate_predictions(test.labels, test.probabilities, splits.class_names)
    validation = predict_validation(model, make_tf_dataset(splits.validation, **common))
    drift_baseline = DriftBaseline.compute(validation.probabilities, validation.labels, splits.class_names,
                                           validation.images)
    # The champion is re-scored on these very rows (paired comparison); floors are judged by
    # their confidence bounds either way.
    champion_predictions = champion.predict(test.images) if champion is not None else None
    if champion is not None:
        champion_metrics = champion.metrics
    holdout, comparison_rows = _production_holdout(model, splits, common, champion, thresholds.alpha)
    decision = bless(report, thresholds, champion_metrics, labels=test.labels, predictions=test.probabilities,
                     champion_predictions=champion_predictions, alpha=thresholds.alpha, seed=config.seed,
                     comparison_rows=comparison_rows)
    metrics = report.to_dict()
    extra = drift_baseline.to_card()
    if holdout is not None:
        metrics["production_holdout"] = holdout  # the registry keeps the metrics, the card shows them
    sources = (getattr(splits, "manifest", None) or {}).get("sources")
    if sources:
        extra["training_data"] = _training_data(splits.content_hash, sources)
    record = EvaluationRecord(
        model_name=model_name,
        architecture=config.architecture,
        data_hash=splits.content_hash,
        training_config=config.to_dict(),
        training={key: training_summary[key] for key in TRAINING_KEYS if key in training_summary},
        metrics=metrics,
        gate=decision.to_dict(),
        champion_metrics=champion_metrics,
        pipeline_run_id=pipeline_run_id or None,
        extra_sections=extra,
    )
    return EvaluationResult(record=record, report=report, decision=decision, validation=validation, test=test)


def int8_plan(splits: DatasetArtifact | DatasetSplits, config: TrainConfig, thresholds: GateThresholds,
              evaluation: EvaluationResult) -> Int8Plan:
    """What export needs for the int8 model.tflite: a few hundred training images to calibrate on
    (the first ones of the split, in its stored order, enough batches and no more), and the float
    model's test rows to judge it on, with the gate's `int8_max_loss`."""
    import math

    from ingot.data.pipeline import make_tf_dataset
    from ingot.export.tflite import DEFAULT_CALIBRATION_IMAGES, Int8Plan

    if evaluation.test is None:
        raise DataError("the evaluation holds no test predictions; run ingot.retrain.steps.evaluate first")
    batches = math.ceil(DEFAULT_CALIBRATION_IMAGES / config.batch_size)
    dataset = make_tf_dataset(splits.train, image_size=config.image_size, batch_size=config.batch_size,
                              training=False, cache=False).take(batches)
    import tensorflow as tf

    calibration = np.concatenate([tf.cast(tf.round(images), tf.uint8).numpy() for images, _ in dataset])
    test = evaluation.test
    return Int8Plan(calibration_images=calibration[:DEFAULT_CALIBRATION_IMAGES], test_images=test.images,
                    test_labels=test.labels, float_probabilities=test.probabilities,
                    max_loss=thresholds.int8_max_loss, alpha=thresholds.alpha, seed=config.seed)


def _production_holdout(model: keras.Model, splits: Any, common: dict[str, Any], champion: Champion | None,
                        alpha: float) -> tuple[dict[str, Any] | None, tuple[Any, Any, Any, str] | None]:
    """(the production holdout's scores for the metrics, the rows the gate compares on) for a
    dataset version with a `production_holdout` split; (None, None) for a plain dataset."""
    from ingot.capture.dataset import HOLDOUT
    from ingot.data.pipeline import make_tf_dataset
    from ingot.evaluate.holdout import holdout_scores

    part = (getattr(splits, "extra", None) or {}).get(HOLDOUT)
    if part is None or len(part) == 0:
        return None, None
    scored = predict_validation(model, make_tf_dataset(part, **common))
    theirs = champion.predict(scored.images) if champion is not None else None
    section = holdout_scores(scored.labels, scored.probabilities, theirs,
                             champion_version=champion.version if champion is not None else None, alpha=alpha)
    rows = (scored.labels, scored.probabilities, theirs, HOLDOUT) if section["gate_compared_here"] else None
    return section, rows


def _training_data(content_hash: str, sources: dict[str, Any]) -> dict[str, Any]:
    """The model card's `training_data`: what the model trained on (base + production rows)."""
    production = sources.get("production") or {}
    return {"dataset_content_hash": content_hash, "base": (sources.get("base") or {}).get("uri"),
            "base_content_hash": (sources.get("base") or {}).get("content_hash"),
            "policy": sources.get("policy"), "production_window": production.get("window"),
            "production_train_rows": production.get("train_rows"),
            "production_holdout_rows": production.get("holdout_rows"),
            "labelled_inputs": production.get("labelled_inputs"), "label_coverage": production.get("label_coverage")}
