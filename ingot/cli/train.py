"""`ingot train`: ingest, train, evaluate, gate and publish in one process (no cluster, no kfp)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ingot import settings
from ingot.evaluate.gate import DEFAULT_ALPHA, DEFAULT_INT8_MAX_LOSS

if TYPE_CHECKING:
    from ingot.train.config import TrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train, evaluate, gate and publish a model in this process",
        description="Run the retraining steps in this process: ingest and validate the dataset into a "
        "Dataset artifact, train, evaluate per class on the held-out test split against the gate and "
        "the registry's champion (as the pipeline does), and publish a blessed model as the next "
        "version in the model repository; with --register, record the outcome in the registry.",
    )
    parser.add_argument("--config", type=Path, help="recipe YAML (see configs/); defaults apply otherwise")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe setting, e.g. --set epochs=5 (repeatable)")
    parser.add_argument("--dataset", help=f"dataset URI (default: the recipe's, else {settings.DEFAULT_DATASET})")
    parser.add_argument("--model-name", default="digits", help="model name in the repository (default: %(default)s)")
    parser.add_argument("--model-repository", default=None,
                        help=f"model repository base (default: ${settings.MODEL_REPOSITORY_ENV} or "
                        f"./{settings.DEFAULT_MODEL_REPOSITORY})")
    parser.add_argument("--registry", default=None, metavar="URL",
                        help=f"registry whose champion the model is compared with (default: ${settings.REGISTRY_URL_ENV}, "
                        f"else SQLite in ${settings.DATA_DIR_ENV})")
    parser.add_argument("--register", action="store_true",
                        help="register a published version (first one becomes champion) or record the rejection")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="train with N local worker processes (MultiWorkerMirroredStrategy on loopback ports) "
                        "into one model; default: the recipe's workers setting (1)")
    add_gate_arguments(parser, int8=True)
    parser.add_argument("--require-blessing", action="store_true",
                        help="exit with status 3 when the gate rejects the model (for automation)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help=f"where step outputs go (default: ${settings.DATA_DIR_ENV}/runs/<timestamp>)")
    parser.set_defaults(handler=run)


def add_gate_arguments(parser: argparse.ArgumentParser, *, int8: bool = False) -> None:
    gate = parser.add_argument_group("blessing gate")
    gate.add_argument("--min-accuracy", type=float, default=settings.DEFAULT_MIN_ACCURACY,
                      help="overall accuracy floor (default: %(default)s)")
    gate.add_argument("--min-class-f1", type=float, default=settings.DEFAULT_MIN_CLASS_F1,
                      help="per-class F1 floor (default: %(default)s)")
    gate.add_argument("--max-regression", type=float, default=settings.DEFAULT_MAX_REGRESSION,
                      help="how far below the champion accuracy and macro F1 may fall (default: %(default)s)")
    if int8:
        gate.add_argument("--int8-max-loss", type=float, default=DEFAULT_INT8_MAX_LOSS,
                          help="leave the int8 model.tflite out of the version when its accuracy is more than "
                               "this below the float model's on the same test rows (default: %(default)s)")
    gate.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                      help="risk of a wrong rejection per confidence interval the gate judges by "
                           "(default: %(default)s)")


def load_config(args: argparse.Namespace) -> TrainConfig:
    """The recipe (--config), its --set overrides and --workers, through the one config loader."""
    from ingot.retrain.config import resolve_config

    overrides = list(args.overrides)
    workers = getattr(args, "workers", None)
    if workers is not None:
        overrides += [f"workers={workers}"] + (["distribution=multi_worker"] if workers > 1 else [])
    return resolve_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from ingot.evaluate.gate import GateThresholds
    from ingot.export.publishing import publish
    from ingot.export.saved_model import export_saved_model
    from ingot.export.tflite import int8_summary
    from ingot.reports import per_class_markdown
    from ingot.retrain.config import resolve_dataset
    from ingot.retrain.registry import open_registry, register, reject
    from ingot.retrain.steps import evaluate, ingest, int8_plan, train

    config = load_config(args)
    thresholds = GateThresholds(
        min_accuracy=args.min_accuracy, min_class_f1=args.min_class_f1, max_regression=args.max_regression,
        alpha=args.alpha, int8_max_loss=args.int8_max_loss,
    )
    dataset = resolve_dataset(args.dataset, config)
    repository = args.model_repository or settings.model_repository()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = args.work_dir or settings.data_dir() / "runs" / stamp
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name: str) -> None:
        timings[name] = time.perf_counter()
        print(f"\n== {name}", flush=True)

    with open_registry(args.registry, required=False) as registry:
        step("ingest")
        ingested = ingest(dataset, work / "dataset", config)
        artifact = ingested.artifact
        print(ingested.report.to_markdown())
        print(f"split: train {len(artifact.train)}, validation {len(artifact.validation)}, "
              f"test {len(artifact.test)}; data hash {artifact.content_hash[:16]}; artifact {work / 'dataset'}")

        step("train")
        trained = train(artifact, config, work / "model", work_dir=work, say=print)
        summary = trained.summary
        print(f"trained {summary['epochs_run']} epochs in {summary['duration_s']:.1f}s; best epoch "
              f"{summary['best_epoch']} restored")

        step("evaluate")
        from ingot.retrain.champion import find_champion

        found = find_champion(registry, args.model_name)
        champion = found.metrics if found is not None else None
        evaluation = evaluate(trained.model, artifact, config, thresholds, model_name=args.model_name,
                              training_summary=summary, champion=found)
        record = evaluation.record
        record.write(work / "evaluation.json")
        report = evaluation.report
        print(report.per_class_table())
        print(f"accuracy {report.accuracy:.4f}  macro F1 {report.macro_f1:.4f}  ECE {report.ece:.4f}"
              + (f"  (champion accuracy {champion['accuracy']:.4f})" if champion else "  (no champion yet)"))
        print(evaluation.decision.summary())
        (work / "evaluation.md").write_text(per_class_markdown(record), encoding="utf-8")

        if record.blessed:
            step("publish")
            export_dir = export_saved_model(trained.model, work / "export", class_names=record.class_names,
                                            image_size=config.image_size, model_card=record.model_card(),
                                            warmup_batch_sizes=config.warmup_batch_sizes,
                                            reference_images=evaluation.validation.images,
                                            int8=int8_plan(artifact, config, thresholds, evaluation))
            print(int8_summary(export_dir))
            published = publish(export_dir, repository, args.model_name)
            state = "published" if published.created else "already published"
            print(f"{state}: {args.model_name} version {published.version} at {published.path} "
                  f"(sha256 {published.model_sha256[:16]})")
        if args.register:
            step("register")
            if record.blessed:
                entry = register(registry, record, version=published.version, artifact_uri=published.path,
                                 model_sha256=published.model_sha256)
            else:
                entry = reject(registry, record)
            stage = entry.stage.value if entry.stage else "-"
            print(f"registry: {entry.name} record #{entry.id} stage {stage} status {entry.status.value} "
                  f"({registry.url})")
    timings["end"] = time.perf_counter()
    names = list(timings)
    spans = ", ".join(f"{a} {timings[b] - timings[a]:.1f}s" for a, b in zip(names, names[1:]))
    print(f"\ndone in {time.perf_counter() - started:.1f}s ({spans}); step outputs in {work}")
    sys.stdout.flush()
    return 3 if args.require_blessing and not record.blessed else 0
