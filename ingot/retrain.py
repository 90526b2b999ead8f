"""The retraining steps (ingest → train → evaluate → export → publish) as plain functions.

Each step reads and writes directories, so the Kubeflow components can run them in separate
containers and pass the directories as artifacts, while `ingot train` chains them in one process.
The `*_step` functions further down are exactly what the pipeline's components call (artifact
paths and JSON values in and out; the registry for the champion and the outcome); nothing here
imports kfp.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingot.errors import DataError

MODEL_FILE = "model.keras"
TRAINING_JSON = "training.json"
EVALUATION_JSON = "evaluation.json"


@dataclass
class IngestOutput:
    splits: Any  # ingot.data.DatasetSplits (in memory, as loaded)
    report: Any  # ingot.data.DataReport
    artifact: Any  # ingot.data.DatasetArtifact: what later steps read


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


def train(splits: Any, config: Any, output_dir: str | os.PathLike[str]) -> TrainOutput:
    """Train per the config on `splits` (a DatasetArtifact, or in-memory DatasetSplits) and save
    the best-epoch Keras model plus its training summary (the Model artifact)."""
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


# ----------------------------------------------------------------------------------------------
# Pipeline steps: what the Kubeflow components (components/) call. Each takes artifact paths and
# plain JSON values and returns plain JSON values, so a component body is a few lines of wiring
# and everything here is testable without kfp.
# ----------------------------------------------------------------------------------------------

DEFAULT_DATASET = "bundled:digits"
EVALUATION_FORMAT = "ingot.evaluation/v1"
SAMPLE_GRID = 3  # the data report shows a SAMPLE_GRID x SAMPLE_GRID grid of training images
THUMBNAIL_PX = 96  # displayed size of each sample (pixels are shown at the model's input size)


def resolve_config(
    recipe: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    architecture: str = "",
    epochs: int = 0,
) -> Any:
    """The TrainConfig a run uses: the recipe's settings, then `key=value` overrides, then the
    pipeline's first-class `architecture`/`epochs` parameters ("" and 0 mean "the recipe's")."""
    from ingot.errors import ConfigError
    from ingot.train import TrainConfig

    if recipe is not None and not isinstance(recipe, dict):
        raise ConfigError(f"recipe must be a mapping of TrainConfig settings, got {type(recipe).__name__}")
    if isinstance(overrides, str) or not all(isinstance(item, str) for item in overrides):
        raise ConfigError(f"overrides must be a list of key=value strings, got {overrides!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs={epochs!r} is not valid; expected a positive integer, or 0 for the recipe's")
    extra = list(overrides)
    if architecture:
        extra.append(f"architecture={architecture}")
    if epochs:
        extra.append(f"epochs={epochs}")
    config = TrainConfig.from_dict(recipe or {})
    return config.with_overrides(extra) if extra else config


def config_parameter(config: Any) -> dict[str, Any]:
    """A TrainConfig as a pipeline parameter: its settings minus the unset (None) ones, which
    kfp parameters cannot carry and `TrainConfig.from_dict` restores as defaults."""
    return {key: value for key, value in config.to_dict().items() if value is not None}


def resolve_dataset(dataset_uri: str, config: Any) -> str:
    """The dataset to load: the explicit URI, else the recipe's `dataset`, else bundled digits."""
    return (dataset_uri or "").strip() or config.dataset or DEFAULT_DATASET


MODEL_REPOSITORY_ENV = "INGOT_MODEL_REPOSITORY"  # as ingot.settings reads it


def resolve_model_repository(model_repository: str | None) -> str:
    """Where a pipeline step publishes: the parameter, else `$INGOT_MODEL_REPOSITORY` (e.g. set on
    the pods by a Kubeflow PodDefault). Neither is an error, never a silent default: in a pod a
    relative default would publish into the container's throw-away filesystem."""
    from ingot.errors import ConfigError

    value = (model_repository or "").strip() or os.environ.get(MODEL_REPOSITORY_ENV, "").strip()
    if not value:
        raise ConfigError(
            f"no model repository given: set the pipeline's model_repository parameter (gs://..., s3://... or a "
            f"path on a volume the steps mount) or ${MODEL_REPOSITORY_ENV} in the steps' environment"
        )
    return value


def resolve_registry_url(registry_url: str | None) -> str:
    """The registry a pipeline step uses: the parameter, else `$INGOT_REGISTRY_URL`; neither is an
    error (a SQLite file inside a pod would vanish with it)."""
    from ingot.errors import ConfigError
    from ingot.registry import REGISTRY_URL_ENV

    value = (registry_url or "").strip() or os.environ.get(REGISTRY_URL_ENV, "").strip()
    if not value:
        raise ConfigError(
            f"no registry given: set the pipeline's registry_url parameter (postgresql://... for a cluster, "
            f"sqlite:///PATH on one machine) or ${REGISTRY_URL_ENV} in the steps' environment (on a "
            f"cluster the pipeline mounts it from the registry_secret Secret's 'url' key)"
        )
    return value


def open_registry(registry_url: str | None) -> Any:
    """The registry at `registry_url` (see resolve_registry_url), its schema created or migrated."""
    from ingot.registry import Registry

    return Registry.from_url(resolve_registry_url(registry_url))


def check_destinations(model_repository: str | None, registry_url: str | None) -> dict[str, str]:
    """Resolve and reach the model repository and the registry before any training is spent: the
    repository base is created if missing, the registry opened (and its schema migrated)."""
    from ingot import repository as repo

    base = resolve_model_repository(model_repository)
    repo.makedirs(base)
    with open_registry(registry_url) as registry:
        url = registry.url
    return {"model_repository": base, "registry": url}


def champion_metrics_from_registry(registry_url: str | None, model_name: str) -> dict[str, Any] | None:
    """The current champion's metrics for the gate's comparison; None before the first champion."""
    with open_registry(registry_url) as registry:
        return registry.champion_metrics(model_name)


# --- ingest ---------------------------------------------------------------------------------


def ingest_step(
    dataset_uri: str, config: Any, dataset_dir: str | os.PathLike[str], report_html: str | os.PathLike[str]
) -> dict[str, Any]:
    """Ingest into `dataset_dir` and write the HTML data report; returns the Dataset artifact's
    metadata (data hash, split sizes, classes)."""
    uri = resolve_dataset(dataset_uri, config)
    ingested = ingest(uri, dataset_dir, config)
    _write_text(Path(report_html), data_report_html(ingested.report, ingested.artifact, config.image_size))
    splits = ingested.artifact
    return {
        "source": uri,
        "data_hash": splits.content_hash,
        "class_names": list(splits.class_names),
        "num_classes": len(splits.class_names),
        "split_sizes": {name: len(part) for name, part in splits.items()},
        "skipped_files": len(ingested.report.skipped),
        "format": splits.manifest["format"],
        "shards": {name: len(part.files) for name, part in splits.items()},
    }


def sample_images(split: Any, image_size: Any, count: int = SAMPLE_GRID * SAMPLE_GRID) -> list[tuple[str, Any]]:
    """Up to `count` (class name, uint8 [H,W,3]) samples of a Dataset artifact split, one class
    after another in class order, so the grid shows every class before repeating one; decoded
    exactly as training decodes. Stops reading once every class has enough."""
    from ingot.data.records import decoded_records

    by_class: list[list[Any]] = [[] for _ in split.class_names]
    for pixels, label in decoded_records(split, image_size).as_numpy_iterator():
        if len(by_class[int(label)]) < count:
            by_class[int(label)].append(pixels)
        if all(len(queue) >= count or not split.counts.get(name) for queue, name in zip(by_class, split.class_names)):
            break
    samples: list[tuple[str, Any]] = []
    while len(samples) < count and any(by_class):
        for label, queue in enumerate(by_class):
            if queue and len(samples) < count:
                samples.append((split.class_names[label], queue.pop(0)))
    return samples


def png_data_uri(pixels: Any) -> str:
    import base64

    import tensorflow as tf

    return "data:image/png;base64," + base64.b64encode(tf.io.encode_png(pixels).numpy()).decode("ascii")


def data_report_html(report: Any, splits: Any, image_size: Any) -> str:
    """The data report as one self-contained HTML page (the Kubeflow UI renders HTML artifacts):
    class counts per split, image sizes, skipped files, and a 3x3 grid of training samples as
    base64 PNGs."""
    from html import escape

    samples = sample_images(splits.train, image_size)
    counts = {name: part.class_counts() for name, part in splits.items()}
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{report.class_counts.get(name, 0)}</td>"
        + "".join(f"<td>{counts[split][name]}</td>" for split in ("train", "validation", "test"))
        + "</tr>"
        for name in splits.class_names
    )
    cells = "".join(
        f'<figure><img src="{png_data_uri(pixels)}" alt="{escape(name)}" width="{THUMBNAIL_PX}" '
        f'height="{THUMBNAIL_PX}"><figcaption>{escape(name)}</figcaption></figure>'
        for name, pixels in samples
    )
    skipped = "".join(f"<li><code>{escape(s.path)}</code>: {escape(s.reason)}</li>" for s in report.skipped)
    ratio = "n/a" if report.imbalance_ratio is None else f"{report.imbalance_ratio:.2f}"
    height, width = report.height, report.width
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Data report</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.grid {{ display: grid; grid-template-columns: repeat({SAMPLE_GRID}, {THUMBNAIL_PX + 16}px); gap: 4px; }}
figure {{ margin: 0; text-align: center; }} img {{ image-rendering: pixelated; border: 1px solid #999; }}
</style></head><body>
<h2>Data report: <code>{escape(report.source)}</code></h2>
<p>{report.total} images in {len(report.class_counts)} classes ({escape(report.kind)}); imbalance ratio
(largest/smallest class) {ratio}; {len(report.skipped)} undecodable file(s) skipped; {report.ignored_files}
non-image file(s) ignored. Data hash <code>{escape(splits.content_hash)}</code>.</p>
<table><tr><th>class</th><th>images</th><th>train</th><th>validation</th><th>test</th></tr>{rows}</table>
<p>Image size: height {height.min}&ndash;{height.max} (mean {height.mean:.1f}), width {width.min}&ndash;{width.max}
(mean {width.mean:.1f}) pixels; the model sees {int(image_size[0])}x{int(image_size[1])}.</p>
<h3>Training samples, as the model sees them</h3>
<div class="grid">{cells}</div>
{f"<h3>Skipped files</h3><ul>{skipped}</ul>" if skipped else ""}
</body></html>
"""


# --- train ----------------------------------------------------------------------------------


def train_step(
    dataset_dir: str | os.PathLike[str], config: Any, model_dir: str | os.PathLike[str],
    curves_html: str | os.PathLike[str],
) -> dict[str, Any]:
    """Train on a saved split; writes the Model artifact and the training-curves page and returns
    the Model artifact's metadata."""
    from ingot.data import open_dataset_artifact

    trained = train(open_dataset_artifact(os.fspath(dataset_dir)), config, model_dir)
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


def _polyline(values: list[float], *, width: int, height: int, low: float, high: float, epochs: int) -> str:
    span = (high - low) or 1.0
    step = width / max(epochs - 1, 1)
    return " ".join(f"{i * step:.1f},{height - (v - low) / span * height:.1f}" for i, v in enumerate(values))


def training_curves_html(history: dict[str, list[float]], *, best_epoch: int | None = None) -> str:
    """Loss and accuracy per epoch (training and validation) as inline SVG charts plus a table:
    small, self-contained, rendered by the Kubeflow UI."""
    from html import escape

    colours = {"loss": "#1f77b4", "val_loss": "#ff7f0e", "accuracy": "#1f77b4", "val_accuracy": "#ff7f0e"}
    epochs = max((len(v) for v in history.values()), default=0)
    width, height = 320, 160
    charts = []
    for title, keys in (("loss", ("loss", "val_loss")), ("accuracy", ("accuracy", "val_accuracy"))):
        series = {k: [float(v) for v in history[k]] for k in keys if history.get(k)}
        if not series:
            continue
        values = [v for vs in series.values() for v in vs]
        low, high = min(values), max(values)
        lines = "".join(
            f'<polyline fill="none" stroke="{colours[k]}" stroke-width="2" points="'
            f'{_polyline(vs, width=width, height=height, low=low, high=high, epochs=epochs)}"/>'
            for k, vs in series.items()
        )
        marker = ""
        if best_epoch and epochs > 1:
            x = (best_epoch - 1) * width / (epochs - 1)
            marker = f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="#2ca02c" stroke-dasharray="4"/>'
        legend = ", ".join(f'<span style="color:{colours[k]}">{escape(k)}</span>' for k in series)
        charts.append(
            f"<figure><figcaption><b>{title}</b> ({legend}; {low:.3f}&ndash;{high:.3f})</figcaption>"
            f'<svg width="{width + 20}" height="{height + 20}" viewBox="-10 -10 {width + 20} {height + 20}">'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="none" stroke="#ccc"/>{marker}{lines}'
            "</svg></figure>"
        )
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if history.get(k)]
    header = "".join(f"<th>{escape(k)}</th>" for k in keys)
    rows = "".join(
        ("<tr class=\"best\">" if best_epoch == epoch + 1 else "<tr>") + f"<td>{epoch + 1}</td>"
        + "".join(f"<td>{history[k][epoch]:.4f}</td>" if epoch < len(history[k]) else "<td></td>" for k in keys)
        + "</tr>"
        for epoch in range(epochs)
    )
    best = f"; best epoch {best_epoch} (dashed line, bold row) restored" if best_epoch else ""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Training curves</title>
<style>body {{ font-family: sans-serif; margin: 1em; }} figure {{ display: inline-block; margin: 0 1em 1em 0; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }} tr.best {{ font-weight: bold; }}</style>
</head><body><h2>Training curves</h2><p>{epochs} epoch(s){best}.</p>
{"".join(charts)}
<table><tr><th>epoch</th>{header}</tr>{rows}</table>
</body></html>
"""


# --- evaluate -------------------------------------------------------------------------------


@dataclass
class EvaluationStep:
    """What the evaluate component reports: the gate's verdict and the metrics the Kubeflow UI
    renders (scalars, confusion matrix)."""

    blessed: bool
    summary: str
    scalars: dict[str, float]
    class_names: list[str]
    confusion_matrix: list[list[int]]
    record: dict[str, Any]


def evaluate_step(
    dataset_dir: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    config: Any,
    thresholds: Any,
    *,
    model_name: str,
    registry_url: str | None,
    pipeline_run_id: str | None,
    evaluation_json: str | os.PathLike[str],
    per_class_markdown: str | os.PathLike[str],
    serving_model_dir: str | os.PathLike[str],
) -> EvaluationStep:
    """Evaluate on the held-out test split against the gate and the registry's champion.

    Writes the evaluation record (what register/reject store in the registry) and the per-class
    table; a blessed model is also exported to `serving_model_dir` as the serving SavedModel
    with its full model card, so publishing (and any retry of it) only copies those bytes.
    """
    from ingot.data import open_dataset_artifact

    splits = open_dataset_artifact(os.fspath(dataset_dir))
    trained = load_trained(model_dir)
    champion = champion_metrics_from_registry(registry_url, model_name)
    evaluation = evaluate(trained.model, splits, config, thresholds, champion)
    record = evaluation_record(model_name, config, trained.summary, evaluation,
                               data_hash=splits.content_hash, pipeline_run_id=pipeline_run_id)
    _write_json(Path(evaluation_json), record)
    _write_text(Path(per_class_markdown), per_class_markdown_text(model_name, evaluation))
    if evaluation.decision.blessed:
        card = model_card(model_name, config, trained.summary, evaluation,
                          data_hash=splits.content_hash, pipeline_run_id=pipeline_run_id)
        export(trained.model, serving_model_dir, model_name=model_name, config=config,
               class_names=list(splits.class_names), card=card)
    report = evaluation.report
    scalars = {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "weighted_f1": report.weighted_f1,
               "ece": report.ece, "mean_confidence": report.mean_confidence}
    scalars.update({f"f1_{name}": report.per_class[name]["f1"] for name in report.class_names})
    return EvaluationStep(
        blessed=bool(evaluation.decision.blessed),
        summary=evaluation.decision.summary(),
        scalars={key: float(value) for key, value in scalars.items()},
        class_names=list(report.class_names),
        confusion_matrix=[[int(c) for c in row] for row in report.confusion_matrix],
        record=record,
    )


def evaluation_record(
    model_name: str, config: Any, training_summary: dict[str, Any], evaluation: EvaluateOutput,
    *, data_hash: str, pipeline_run_id: str | None,
) -> dict[str, Any]:
    """Everything the registry keeps about one evaluated model: lineage, metrics, the decision."""
    training = {key: training_summary[key] for key in ("epochs_run", "best_epoch", "best_metrics", "hardware",
                                                       "duration_s") if key in training_summary}
    return {
        "format": EVALUATION_FORMAT,
        "model_name": model_name,
        "data_hash": data_hash,
        "config": config.to_dict(),
        "training": training,
        "pipeline_run_id": pipeline_run_id or None,
        **evaluation.to_dict(),
    }


def read_evaluation_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        record = read_json(path)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the evaluation record {path}: {err}") from err
    if not isinstance(record, dict) or record.get("format") != EVALUATION_FORMAT:
        raise DataError(f"{path} is not an evaluation record ({EVALUATION_FORMAT}) written by the evaluate step")
    return record


def per_class_markdown_text(model_name: str, evaluation: EvaluateOutput) -> str:
    """The per-class table and the gate's verdict as Markdown (rendered by the Kubeflow UI)."""
    report, decision = evaluation.report, evaluation.decision
    floor = decision.thresholds.get("min_class_f1")
    failed = {c["name"].split(":", 1)[1] for c in decision.checks
              if c["name"].startswith("class_f1:") and not c["passed"]}
    lines = [
        f"## {model_name}: {'BLESSED' if decision.blessed else 'REJECTED'}",
        "",
        f"Held-out test split: {report.num_examples} images. Accuracy **{report.accuracy:.4f}**, "
        f"macro F1 **{report.macro_f1:.4f}**, ECE {report.ece:.4f}.",
        "",
    ]
    champion = evaluation.champion_metrics
    if champion:
        lines += [f"Champion: accuracy {float(champion['accuracy']):.4f}, macro F1 "
                  f"{float(champion['macro_f1']):.4f}.", ""]
    else:
        lines += ["No champion yet: nothing to compare against.", ""]
    lines += [
        f"| class | precision | recall | F1 | support | F1 floor {'' if floor is None else f'{floor:.2f}'} |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for name in report.class_names:
        row = report.per_class[name]
        verdict = "n/a" if floor is None else ("**below**" if name in failed else "ok")
        lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | "
                     f"{int(row['support'])} | {verdict} |")
    lines += [""]
    if decision.reasons:
        lines += ["Reasons:", ""] + [f"- {reason}" for reason in decision.reasons]
    else:
        lines += [f"All {len(decision.checks)} gate checks passed."]
    return "\n".join(lines) + "\n"


# --- publish and register -------------------------------------------------------------------


def publish_step(serving_model_dir: str | os.PathLike[str], repository: str, model_name: str) -> Any:
    """Publish the evaluate step's export; a retry finds the same model_sha256 and returns the
    version it already published (created=False) instead of adding one."""
    return publish(serving_model_dir, resolve_model_repository(repository), model_name)


def register_step(
    evaluation_json: str | os.PathLike[str],
    *,
    registry_url: str | None,
    model_name: str,
    version: int,
    artifact_uri: str,
    model_sha256: str,
    pipeline_run_id: str | None,
) -> Any:
    """Register a published version with its lineage and mark it READY once its checksums verify.

    The registry's stage policy makes the first blessed version of a name champion and later
    ones candidates. Idempotent: a retry gets the same record back.
    """
    from ingot.registry import repository_verifier

    record = read_evaluation_record(evaluation_json)
    with open_registry(registry_url) as registry:
        registry.register_version(
            model_name, version=int(version), artifact_uri=artifact_uri, model_sha256=model_sha256,
            data_hash=record["data_hash"], config=record["config"], metrics=record["metrics"],
            gate=record["decision"], pipeline_run_id=pipeline_run_id or record.get("pipeline_run_id"),
        )
        return registry.mark_ready(model_name, int(version), verify=repository_verifier)


def reject_step(
    evaluation_json: str | os.PathLike[str], *, registry_url: str | None, model_name: str,
    pipeline_run_id: str | None,
) -> Any:
    """Record a model the gate rejected, with its reasons (idempotent per pipeline run)."""
    record = read_evaluation_record(evaluation_json)
    decision = record["decision"]
    with open_registry(registry_url) as registry:
        return registry.record_rejection(
            model_name, reasons=decision["reasons"], metrics=record["metrics"], data_hash=record["data_hash"],
            config=record["config"], gate=decision,
            pipeline_run_id=pipeline_run_id or record.get("pipeline_run_id"),
        )


def registry_summary(version: Any, *, published_created: bool | None = None) -> dict[str, Any]:
    """The small JSON a register/reject step outputs: enough to find and describe the record."""
    return {
        "id": version.id,
        "name": version.name,
        "version": version.version,
        "stage": version.stage.value if version.stage else None,
        "status": version.status.value,
        "artifact_uri": version.artifact_uri,
        "model_sha256": version.model_sha256,
        "pipeline_run_id": version.pipeline_run_id,
        "published_created": published_created,
    }


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
