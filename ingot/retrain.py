"""The retraining steps (ingest → train → evaluate → export → publish) as plain functions.

Each step reads and writes directories, so the Kubeflow components can run them in separate
containers and pass the directories as artifacts, while `ingot train` chains them in one process.
Nothing here knows about kfp, a cluster or a registry: the caller supplies the champion's
metrics and records the outcome.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingot.errors import DataError

REPORT_JSON = "data_report.json"
REPORT_MARKDOWN = "data_report.md"
MODEL_FILE = "model.keras"
TRAINING_JSON = "training.json"
EVALUATION_JSON = "evaluation.json"


@dataclass
class IngestOutput:
    splits: Any  # ingot.data.DatasetSplits
    report: Any  # ingot.data.DataReport
    directory: Path


@dataclass
class TrainOutput:
    model: Any  # keras.Model at its best validation epoch
    summary: dict[str, Any]  # TrainResult.to_dict() plus the config
    directory: Path


@dataclass
class EvaluateOutput:
    report: Any  # ingot.evaluate.EvaluationReport on the test split
    baseline: dict[str, Any]  # validation confidence baseline for drift checks
    decision: Any  # ingot.evaluate.GateDecision
    champion_metrics: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.report.to_dict(),
            "confidence_baseline": self.baseline,
            "decision": self.decision.to_dict(),
            "champion_metrics": self.champion_metrics,
        }


@dataclass
class RetrainOutcome:
    ingest: IngestOutput
    training: TrainOutput
    evaluation: EvaluateOutput
    published: Any = None  # ingot.export.PublishedVersion when blessed
    export_dir: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def _write_json(path: Path, value: Any) -> None:
    """Write JSON through a temp file and a rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def ingest(dataset_uri: str, output_dir: str | os.PathLike[str], config: Any) -> IngestOutput:
    """Load and validate `dataset_uri`, split it from the config's seed, and save the split and
    its data report into `output_dir` (the Dataset artifact)."""
    from ingot.data import load_dataset, save_splits, split_dataset

    data, report = load_dataset(dataset_uri, min_images_per_class=config.min_images_per_class)
    splits = split_dataset(
        data,
        validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    splits.source = splits.source or str(dataset_uri)
    directory = Path(output_dir)
    save_splits(splits, directory)
    _write_json(directory / REPORT_JSON, report.to_dict())
    (directory / REPORT_MARKDOWN).write_text(report.to_markdown(), encoding="utf-8")
    return IngestOutput(splits=splits, report=report, directory=directory)


def train(splits: Any, config: Any, output_dir: str | os.PathLike[str]) -> TrainOutput:
    """Train per the config and save the best-epoch Keras model plus its training summary
    (the Model artifact)."""
    from ingot.train import train_model

    result = train_model(config, splits)
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    result.model.save(directory / MODEL_FILE)
    summary = {
        **result.to_dict(),
        "config": config.to_dict(),
        "class_names": list(splits.class_names),
        "data_hash": splits.content_hash,
    }
    _write_json(directory / TRAINING_JSON, summary)
    return TrainOutput(model=result.model, summary=summary, directory=directory)


def load_trained(directory: str | os.PathLike[str]) -> TrainOutput:
    """Reload a `train` step's output (in a later pipeline step)."""
    import keras

    directory = Path(directory)
    model = keras.models.load_model(directory / MODEL_FILE)
    return TrainOutput(model=model, summary=read_json(directory / TRAINING_JSON), directory=directory)


def evaluate(
    model: Any,
    splits: Any,
    config: Any,
    thresholds: Any,
    champion_metrics: dict[str, Any] | None = None,
) -> EvaluateOutput:
    """Per-class metrics on the held-out test split, the validation confidence baseline, and
    the gate's decision (against the champion when its metrics are given)."""
    from ingot.data import make_tf_dataset
    from ingot.evaluate import bless, confidence_baseline, evaluate_model

    if len(splits.test) == 0:
        raise DataError("the test split is empty; raise test_fraction so every model is judged on held-out data")
    common = {"image_size": config.image_size, "batch_size": config.batch_size, "training": False}
    report = evaluate_model(model, make_tf_dataset(splits.test, **common), splits.class_names)
    baseline = confidence_baseline(
        model, make_tf_dataset(splits.validation, **common), class_names=splits.class_names
    )
    decision = bless(report, thresholds, champion_metrics)
    return EvaluateOutput(report=report, baseline=baseline, decision=decision, champion_metrics=champion_metrics)


def model_card(
    model_name: str, config: Any, training_summary: dict[str, Any], evaluation: EvaluateOutput,
    *, data_hash: str, pipeline_run_id: str | None = None,
) -> dict[str, Any]:
    """The lineage a published model carries: recipe, data hash, metrics, gate decision."""
    training = {key: training_summary[key] for key in ("epochs_run", "best_epoch", "hardware", "duration_s")
                if key in training_summary}
    return {
        "name": model_name,
        "architecture": config.architecture,
        "training_config": config.to_dict(),
        "data_hash": data_hash,
        "metrics": evaluation.report.to_dict(),
        "confidence_baseline": evaluation.baseline,
        "gate": evaluation.decision.to_dict(),
        "training": training,
        "pipeline_run_id": pipeline_run_id,
    }


def export(
    model: Any,
    export_dir: str | os.PathLike[str],
    *,
    model_name: str,
    config: Any,
    class_names: list[str],
    card: dict[str, Any],
) -> Path:
    """Write the serving SavedModel (both signatures, warm-up records, model card)."""
    from ingot.export import export_saved_model

    return export_saved_model(
        model, export_dir, class_names=class_names, image_size=config.image_size, model_card=card
    )


def publish(export_dir: str | os.PathLike[str], repository: str, model_name: str) -> Any:
    """Atomically publish into `<repository>/<model_name>/<next version>/` (idempotent)."""
    from ingot.export import publish as publish_version

    return publish_version(export_dir, repository, model_name)


def champion_metrics_from_repository(repository: str, model_name: str) -> dict[str, Any] | None:
    """The newest published version's metrics, from its model card: the champion to beat when
    no registry is in use."""
    from ingot import repository as repo

    latest = repo.latest_version(repository, model_name) if repo.exists(repository) else None
    if latest is None:
        return None
    return repo.read_model_card(repo.version_path(repository, model_name, latest)).get("metrics")
