"""`ingot train`: ingest, train, evaluate, gate and publish in one process (no cluster, no kfp)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ingot import settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train, evaluate, gate and publish a model in this process",
        description="Run the retraining steps in this process: ingest and validate the dataset, "
        "train, evaluate per class on the held-out test split, apply the blessing gate, and "
        "publish a blessed model as the next version in the model repository.",
    )
    parser.add_argument("--config", type=Path, help="recipe YAML (see configs/); defaults apply otherwise")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe setting, e.g. --set epochs=5 (repeatable)")
    parser.add_argument("--dataset", help="dataset URI (default: the recipe's, else bundled:digits)")
    parser.add_argument("--model-name", default="digits", help="model name in the repository (default: %(default)s)")
    parser.add_argument("--model-repository", default=None,
                        help="model repository base (default: $INGOT_MODEL_REPOSITORY or ./model-repository)")
    add_gate_arguments(parser)
    parser.add_argument("--require-blessing", action="store_true",
                        help="exit with status 3 when the gate rejects the model (for automation)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where step outputs go (default: $INGOT_DATA_DIR/runs/<timestamp>)")
    parser.set_defaults(handler=run)


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    gate = parser.add_argument_group("blessing gate")
    gate.add_argument("--min-accuracy", type=float, default=0.9, help="overall accuracy floor (default: %(default)s)")
    gate.add_argument("--min-class-f1", type=float, default=0.7, help="per-class F1 floor (default: %(default)s)")
    gate.add_argument("--max-regression", type=float, default=0.01,
                      help="how far below the champion accuracy and macro F1 may fall (default: %(default)s)")


def load_config(args: argparse.Namespace):
    from ingot.train import TrainConfig

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    return config.with_overrides(args.overrides) if args.overrides else config


def run(args: argparse.Namespace) -> int:
    from ingot import retrain
    from ingot.evaluate import GateThresholds

    config = load_config(args)
    thresholds = GateThresholds(
        min_accuracy=args.min_accuracy, min_class_f1=args.min_class_f1, max_regression=args.max_regression
    )
    dataset = args.dataset or config.dataset or "bundled:digits"
    repository = args.model_repository or settings.model_repository()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = args.work_dir or settings.data_dir() / "runs" / stamp
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name: str):
        timings[name] = time.perf_counter()
        print(f"\n== {name}", flush=True)

    step("ingest")
    ingested = retrain.ingest(dataset, work / "dataset", config)
    print(ingested.report.to_markdown())
    print(f"split: train {len(ingested.splits.train)}, validation {len(ingested.splits.validation)}, "
          f"test {len(ingested.splits.test)}; data hash {ingested.splits.content_hash[:16]}")

    step("train")
    trained = retrain.train(ingested.artifact, config, work / "model")
    summary = trained.summary
    print(f"trained {summary['epochs_run']} epochs in {summary['duration_s']:.1f}s; best epoch "
          f"{summary['best_epoch']} restored")

    step("evaluate")
    champion = retrain.champion_metrics_from_repository(repository, args.model_name)
    evaluation = retrain.evaluate(trained.model, ingested.artifact, config, thresholds, champion)
    report = evaluation.report
    print(report.per_class_table())
    print(f"accuracy {report.accuracy:.4f}  macro F1 {report.macro_f1:.4f}  ECE {report.ece:.4f}"
          + (f"  (champion accuracy {champion['accuracy']:.4f})" if champion else "  (no champion yet)"))
    print(evaluation.decision.summary())

    if evaluation.decision.blessed:
        step("publish")
        card = retrain.model_card(args.model_name, config, summary, evaluation,
                                  data_hash=ingested.splits.content_hash)
        export_dir = retrain.export(trained.model, work / "export", model_name=args.model_name, config=config,
                                    class_names=list(ingested.splits.class_names), card=card)
        published = retrain.publish(export_dir, repository, args.model_name)
        state = "published" if published.created else "already published"
        print(f"{state}: {args.model_name} version {published.version} at {published.path} "
              f"(sha256 {published.model_sha256[:16]})")
    timings["end"] = time.perf_counter()
    names = list(timings)
    spans = ", ".join(f"{a} {timings[b] - timings[a]:.1f}s" for a, b in zip(names, names[1:]))
    print(f"\ndone in {time.perf_counter() - started:.1f}s ({spans}); step outputs in {work}")
    sys.stdout.flush()
    return 3 if args.require_blessing and not evaluation.decision.blessed else 0
