"""`ingot loop`: the whole loop on one machine (what `make run` runs); see ingot/loop/run.py."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ingot.loop.run import LoopOptions

    d = LoopOptions()
    parser = subparsers.add_parser(
        "loop", help="the whole loop on one machine: retrain, serve, A/B test and decide, drift, retrain",
        description="Retrain through the ingot-retrain pipeline (a champion when there is none, then a "
        "challenger), serve both behind the gateway on free loopback ports, drive live traffic with "
        "delayed ground truth, let `ingot rollout` promote or roll back, drift the traffic and let "
        "`ingot monitor check --trigger` start a retraining run. Stops every process it started.",
    )
    parser.add_argument("--model", default=d.model, help="model name (default: %(default)s)")
    parser.add_argument("--config", type=Path, default=d.config, help="recipe of a first champion (default: %(default)s)")
    parser.add_argument("--challenger-config", type=Path, default=d.challenger_config,
                        help="recipe of the challenger; its opening comment says why it differs (default: %(default)s)")
    parser.add_argument("--policy", type=Path, default=d.policy, help="rollout policy file (default: %(default)s)")
    parser.add_argument("--steps", default=d.steps, help="challenger traffic percents per step (default: %(default)s)")
    parser.add_argument("--dataset", default=d.dataset, help="dataset URI (default: %(default)s)")
    parser.add_argument("--model-repository", type=Path, default=d.model_repository,
                        help="model repository base (default: %(default)s)")
    parser.add_argument("--registry", default=None, metavar="URL",
                        help="registry (and inference log) database URL; default $INGOT_REGISTRY_URL, else SQLite "
                        "in the data directory")
    parser.add_argument("--workdir", type=Path, default=d.workdir,
                        help="routing table, model configs, server logs and reports (default: %(default)s)")
    parser.add_argument("--set", dest="pipeline_set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe setting in every training run (repeatable), e.g. epochs=5")
    for name, text in (("min-accuracy", "the gate's accuracy floor"), ("min-class-f1", "the gate's per-class F1 floor"),
                       ("max-regression", "how much worse than the champion the gate tolerates")):
        parser.add_argument(f"--{name}", type=float, default=None, help=f"{text} in every training run "
                            "(default: the pipeline's)")
    parser.add_argument("--max-requests", type=int, default=d.max_requests,
                        help="traffic budget of the A/B stage (default: %(default)s)")
    parser.add_argument("--drift-requests", type=int, default=d.drift_requests,
                        help="traffic budget of the drift stage (default: %(default)s)")
    parser.add_argument("--monitor-window", type=int, default=d.monitor_window,
                        help="rows per drift check (default: %(default)s)")
    parser.add_argument("--callers", type=int, default=d.callers, help="simulated callers (default: %(default)s)")
    parser.add_argument("--label-share", type=float, default=d.label_share,
                        help="share of rows whose ground truth comes back (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--live-per-class", type=int, default=d.live_per_class,
                        help="images per class carved out of the dataset as the live traffic's pool, in no "
                        "training, validation or test split (default: %(default)s)")
    parser.add_argument("--drift-rate", type=float, default=d.drift_rate,
                        help="requests/s while the monitor watches the drifted stream (default: %(default)s)")
    parser.add_argument("--retrain-rate", type=float, default=d.retrain_rate,
                        help="requests/s while the triggered run trains; it shares the cores with the servers "
                        "(default: %(default)s)")
    parser.add_argument("--production-weight", type=int, default=d.production_weight,
                        help="each labelled production row appears N times in the triggered run's train split "
                        "(default: %(default)s)")
    parser.add_argument("--max-production-rows", type=int, default=d.max_production_rows,
                        help="the newest N labelled production inputs the triggered run builds on (default: %(default)s)")
    parser.add_argument("--heal-requests", type=int, default=d.heal_requests,
                        help="traffic budget of the healed candidate's A/B test (default: %(default)s)")
    parser.add_argument("--after-requests", type=int, default=d.after_requests,
                        help="requests measured on the drifted stream after a promotion (default: %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ingot.errors import ConfigError
    from ingot.loop.run import Loop, LoopOptions
    from ingot.loop.summary import format_summary

    for name in ("max_requests", "drift_requests", "monitor_window", "callers", "live_per_class",
                 "production_weight", "max_production_rows", "heal_requests", "after_requests"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("drift_rate", "retrain_rate"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 < args.label_share <= 1:
        raise ConfigError(f"--label-share must be in (0, 1], got {args.label_share}")
    for path in (args.config, args.challenger_config, args.policy):
        if not path.is_file():
            raise ConfigError(f"{path} does not exist; expected a YAML file (see configs/)")
    options = LoopOptions(
        model=args.model, config=args.config, challenger_config=args.challenger_config, policy=args.policy,
        steps=args.steps, dataset=args.dataset, model_repository=args.model_repository, workdir=args.workdir,
        registry_url=args.registry, pipeline_set=list(args.pipeline_set), max_requests=args.max_requests,
        drift_requests=args.drift_requests, monitor_window=args.monitor_window, callers=args.callers,
        label_share=args.label_share, seed=args.seed, live_per_class=args.live_per_class,
        drift_rate=args.drift_rate, retrain_rate=args.retrain_rate, production_weight=args.production_weight,
        max_production_rows=args.max_production_rows, heal_requests=args.heal_requests,
        after_requests=args.after_requests,
        gate={name: getattr(args, name) for name in ("min_accuracy", "min_class_f1", "max_regression")
              if getattr(args, name) is not None},
    )
    started = time.perf_counter()
    loop = Loop(options, out=lambda line: print(line, flush=True))
    try:
        result = loop.run()
    except KeyboardInterrupt:
        print(format_summary(loop.result, wall_s=time.perf_counter() - started), flush=True)
        print("ingot loop: interrupted; every process it started was stopped", flush=True)
        return 130
    print(format_summary(result, wall_s=time.perf_counter() - started), flush=True)
    return 0
