"""The retraining steps (ingest -> train -> evaluate -> export -> publish) as plain functions.

Each step reads and writes directories: the Dataset artifact (TFRecord shards and manifest),
the Model artifact (best-epoch Keras model and its training summary), the serving SavedModel.
The pipeline's components run them in separate pods and pass the directories as artifacts;
`ingot train` chains them in one process through exactly the same functions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ingot.errors import DataError

MODEL_FILE = "model.keras"
TRAINING_JSON = "training.json"


@dataclass
class IngestOutput:
    splits: Any  # ingot.data.DatasetSplits (in memory, as loaded)
    report: Any  # ingot.data.DataReport
    artifact: Any  # ingot.data.DatasetArtifact: what later steps read


@dataclass
class TrainOutput:
    model: Any  # keras.Model at its best validation epoch
    summary: dict[str, Any]  # TrainResult.to_dict() plus the config, class names and data hash
    directory: Path


@dataclass
class ValidationPredictions:
    """The validation split as the model saw it and what it answered, held in one place for
    whatever builds a reference from them (the drift baseline)."""

    images: np.ndarray  # uint8 [N, H, W, 3], decoded and resized as serving does
    labels: np.ndarray  # int64 [N]
    probabilities: np.ndarray  # float32 [N, C]


@dataclass
class Evaluation:
    """The evaluate step's result: the typed record (what the model card, the registry and the
    report are built from), the test report and gate decision, and the validation predictions."""

    record: Any  # ingot.evaluate.EvaluationRecord
    report: Any  # ingot.evaluate.EvaluationReport on the test split
    decision: Any  # ingot.evaluate.GateDecision
    validation: ValidationPredictions


def _write_json(path: Path, value: Any) -> None:
    """Write JSON through a temp file and a rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def ingest(dataset_uri: str, output_dir: str | os.PathLike[str], config: Any) -> IngestOutput:
    """Load and validate `dataset_uri`, split it from the config's seed, and write the Dataset
    artifact into `output_dir`: the images themselves as TFRecord shards plus a manifest holding
    the data report, so later steps (other pods) need nothing else."""
    from ingot.data import load_dataset, split_dataset, write_dataset_artifact

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


def train(
    splits: Any, config: Any, output_dir: str | os.PathLike[str], *, callbacks: Any = (), strategy: Any = None
) -> TrainOutput:
    """Train per the config on `splits` (a DatasetArtifact, or in-memory DatasetSplits) and save
    the best-epoch Keras model plus its training summary (the Model artifact). `strategy`: a
    multi-worker worker's, made at process start (see ingot.train.distributed)."""
    from ingot.train import train_model

    result = train_model(config, splits, callbacks=callbacks, strategy=strategy)
    summary = {
        **result.to_dict(),
        "config": config.to_dict(),
        "class_names": list(splits.class_names),
        "data_hash": splits.content_hash,
    }
    location = os.fspath(output_dir)
    if "://" in location:  # object storage (a TFJob's chief): write locally, then copy through gfile
        import tempfile

        import tensorflow as tf

        with tempfile.TemporaryDirectory(prefix="ingot-model-") as scratch:
            _save_model_artifact(result.model, summary, Path(scratch))
            tf.io.gfile.makedirs(location)
            for name in (MODEL_FILE, TRAINING_JSON):
                tf.io.gfile.copy(str(Path(scratch) / name), f"{location.rstrip('/')}/{name}", overwrite=True)
        return TrainOutput(model=result.model, summary=summary, directory=Path(location))
    directory = Path(location)
    _save_model_artifact(result.model, summary, directory)
    return TrainOutput(model=result.model, summary=summary, directory=directory)


def _save_model_artifact(model: Any, summary: dict[str, Any], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / MODEL_FILE)
    _write_json(directory / TRAINING_JSON, summary)


def load_trained(directory: str | os.PathLike[str]) -> TrainOutput:
    """Reload a `train` step's output (in a later pipeline step)."""
    import keras

    directory = Path(directory)
    if not (directory / MODEL_FILE).is_file():
        raise DataError(f"{directory} has no {MODEL_FILE}; expected the Model artifact written by the train step")
    model = keras.models.load_model(directory / MODEL_FILE)
    summary = json.loads((directory / TRAINING_JSON).read_text(encoding="utf-8"))
    return TrainOutput(model=model, summary=summary, directory=directory)


def predict_validation(model: Any, dataset: Any) -> ValidationPredictions:
    """Run `model` once over a deterministic (float 0..255 images, labels) dataset, keeping the
    images as uint8 (exact: evaluation pipelines do not augment)."""
    import tensorflow as tf

    images, labels, probabilities = [], [], []
    for batch_images, batch_labels in dataset:
        output = model(tf.cast(batch_images, tf.float32), training=False)
        images.append(tf.cast(tf.round(batch_images), tf.uint8).numpy())
        labels.append(np.asarray(batch_labels).reshape(-1))
        probabilities.append(np.asarray(tf.cast(output, tf.float32)))
    if not labels:
        raise DataError("the validation split is empty; a drift baseline needs at least one image")
    return ValidationPredictions(
        images=np.concatenate(images), labels=np.concatenate(labels).astype(np.int64),
        probabilities=np.concatenate(probabilities, axis=0),
    )


def evaluate(
    model: Any,
    splits: Any,
    config: Any,
    thresholds: Any,
    *,
    model_name: str,
    training_summary: dict[str, Any],
    champion_metrics: dict[str, Any] | None = None,
    pipeline_run_id: str | None = None,
) -> Evaluation:
    """Per-class metrics on the held-out test split, the validation split's drift baseline, and the
    gate's decision (against the champion when its metrics are given), as one typed record. The
    drift baseline (`drift_baseline` in the model card) is what the drift monitor compares live
    traffic with."""
    from ingot.data import make_tf_dataset
    from ingot.evaluate import (
        EvaluationRecord,
        bless,
        evaluate_model,
    )
    from ingot.evaluate.drift import DriftBaseline
    from ingot.evaluate.record import TRAINING_KEYS

    if len(splits.test) == 0:
        raise DataError("the test split is empty; raise test_fraction so every model is judged on held-out data")
    common = {"image_size": config.image_size, "batch_size": config.batch_size, "training": False}
    report = evaluate_model(model, make_tf_dataset(splits.test, **common), splits.class_names)
    validation = predict_validation(model, make_tf_dataset(splits.validation, **common))
    drift_baseline = DriftBaseline.compute(validation.probabilities, validation.labels, splits.class_names,
                                           validation.images)
    decision = bless(report, thresholds, champion_metrics)
    record = EvaluationRecord(
        model_name=model_name,
        architecture=config.architecture,
        data_hash=splits.content_hash,
        training_config=config.to_dict(),
        training={key: training_summary[key] for key in TRAINING_KEYS if key in training_summary},
        metrics=report.to_dict(),
        gate=decision.to_dict(),
        champion_metrics=champion_metrics,
        pipeline_run_id=pipeline_run_id or None,
        extra_sections=drift_baseline.to_card(),
    )
    return Evaluation(record=record, report=report, decision=decision, validation=validation)


def export(model: Any, export_dir: str | os.PathLike[str], record: Any, *, image_size: Any) -> Path:
    """Write the serving SavedModel (both signatures, warm-up records, the record's model card)."""
    from ingot.export import export_saved_model

    return export_saved_model(
        model, export_dir, class_names=record.class_names, image_size=image_size, model_card=record.model_card()
    )


def publish(export_dir: str | os.PathLike[str], repository: str, model_name: str) -> Any:
    """Atomically publish into `<repository>/<model_name>/<next version>/` (idempotent: a retry
    finds the same model_sha256 and returns the version it already published)."""
    from ingot.export import publish as publish_version

    return publish_version(export_dir, repository, model_name)
