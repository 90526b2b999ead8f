"""`ingot monitor check|run|history`: the drift monitor (see docs/monitor.md).

`check` compares a window of the inference log with the champion's model-card baseline and exits
0 (no drift, or too little data), 3 (drift) or 1 (error), for CronJobs and scripts; `--trigger`
starts `ingot-retrain` on drift, under the cooldown and one-run-in-flight rule. `run` repeats the
check on an interval; `history` lists a model's triggers. Heavy imports happen in the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from ingot import settings
from ingot.errors import ConfigError, IngotError
from ingot.settings import KFP_HOST_ENV, LOG_URL_ENV, MONITOR_DATASET_ENV, REGISTRY_URL_ENV

DEFAULT_WINDOW = 1000
EXIT_DRIFT = 3


def _duration(text: str) -> timedelta:
    from ingot.monitor.window import parse_duration

    try:
        return parse_duration(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 and 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--registry", metavar="URL", default=None,
                          help=f"registry database (champion, model card, trigger table); default: ${REGISTRY_URL_ENV}, "
                          "else the SQLite file in $INGOT_DATA_DIR")

    check = argparse.ArgumentParser(add_help=False)
    check.add_argument("model", metavar="MODEL", help="model name (its champion's model card is the baseline)")
    size = check.add_mutually_exclusive_group()
    size.add_argument("--window", type=_positive, default=None, metavar="N",
                      help=f"the newest N predictions (default: {DEFAULT_WINDOW})")
    size.add_argument("--since", type=_duration, default=None, metavar="DURATION",
                      help="predictions logged in the last DURATION, e.g. 6h, 30m, 7d")
    check.add_argument("--log-url", metavar="URL", default=None,
                       help=f"inference-log database; default: ${LOG_URL_ENV}, else the registry's database")
    check.add_argument("--alpha", type=_fraction, default=None,
                       help="family-wise significance level, Bonferroni over the tests that ran (default: 0.01)")
    check.add_argument("--min-rows", type=_positive, default=None,
                       help="fewer predictions than this is 'insufficient data' (default: 200)")
    check.add_argument("--min-labels", type=_positive, default=None,
                       help="feedback labels needed to test labelled accuracy (default: 50)")
    check.add_argument("--all-rows", action="store_true",
                       help="count every served row of the variant, not only evidence rows (pinned requests and "
                       "untrusted sticky keys, which a caller chooses, are left out by default)")
    check.add_argument("--capture-url", default=None, metavar="URL",
                       help="the gateway's input capture, a directory, s3:// or gs:// "
                            "(<URL>/<model>/<sha256[:2]>/<sha256>.<ext>): enables the embedding drift tests "
                            "(default: skipped)")
    check.add_argument("--embedding-server", default=None, metavar="URL",
                       help="model server answering serving_embedding for the captured inputs "
                            "(http://host:8501 or grpc://host:8500; default http://127.0.0.1:8501)")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.add_argument("--report", type=Path, default=None, metavar="FILE.html",
                       help="also write an HTML report with baseline-vs-live plots")
    trigger = check.add_argument_group("retraining (--trigger)")
    trigger.add_argument("--trigger", action="store_true",
                         help="on drift (or labelled accuracy below the gate's floor) start ingot-retrain with the "
                         "champion's recipe, unless a triggered run is in flight or the cooldown has not passed")
    trigger.add_argument("--cooldown", type=_duration, default=timedelta(hours=24), metavar="DURATION",
                         help="minimum time between two triggers of a model (default: 24h)")
    trigger.add_argument("--dataset", default=None, metavar="URI",
                         help=f"dataset the retraining reads; default: ${MONITOR_DATASET_ENV}, else the recipe's")
    trigger.add_argument("--model-repository", default=None, metavar="PATH_OR_URI",
                         help="model repository of a local run (default: $INGOT_MODEL_REPOSITORY)")
    trigger.add_argument("--host", default=None, metavar="URL",
                         help=f"Kubeflow Pipelines endpoint to submit to; default: ${KFP_HOST_ENV}, else run locally")
    trigger.add_argument("--experiment", default=None, help="KFP experiment of triggered runs")
    trigger.add_argument("--namespace", default=None, help="KFP namespace (multi-user)")
    trigger.add_argument("--service-account", default=None, help="service account of the run's pods")
    trigger.add_argument("--image", default=None, help="container image of the steps")
    trigger.add_argument("--new-labels", type=_positive, default=None, metavar="N",
                         help="also trigger when at least N labelled production rows arrived since the end of the "
                         "window of the champion's dataset version (all labelled rows when it trained on none)")
    trigger.add_argument("--base-data-only", action="store_true",
                         help="triggered runs train on the recipe's dataset alone (default: base + the "
                         "labelled captured production rows, built as a dataset version first; with --host only "
                         "when $INGOT_CAPTURE_URL is s3:// or gs://)")
    trigger.add_argument("--production-weight", type=_positive, default=None, metavar="N",
                         help="each production training row appears N times in train (default: 3)")
    trigger.add_argument("--holdout-fraction", type=_fraction, default=0.2, metavar="F",
                         help="newest share of the production rows kept as the production holdout (default: 0.2)")
    trigger.add_argument("--production-window", type=_duration, default=None, metavar="DURATION",
                         help="only production rows requested in this last stretch of time (default: all)")
    trigger.add_argument("--max-production-rows", type=_positive, default=None, metavar="N",
                         help="only the newest N labelled production inputs (a rolling window by count; default: all)")

    parser = subparsers.add_parser(
        "monitor", help="drift monitor: live predictions vs the model card baseline; triggered retraining",
        description="Compare windows of the inference log with the champion's validation baseline "
        "(class prior, confidence, input statistics, estimated and labelled accuracy) and optionally "
        "start ingot-retrain on drift, with a cooldown and at most one run in flight.",
    )
    actions = parser.add_subparsers(dest="monitor_command", metavar="ACTION", required=True)
    check_parser = actions.add_parser(
        "check", parents=[database, check], help="one check; exit 0 no drift, 3 drift (or another trigger condition), 1 error",
        description="One drift check. Exit status: 0 no drift or insufficient data, 3 drift, labelled accuracy "
        "below the gate's floor or (--new-labels) enough new labels, 1 error.",
    )
    check_parser.set_defaults(handler=check_command)
    run_parser = actions.add_parser(
        "run", parents=[database, check], help="repeat the check on an interval",
        description="Repeat `check` every --interval; a failing check (database down, ...) is reported "
        "and the loop goes on.",
    )
    run_parser.add_argument("--interval", type=_duration, default=timedelta(hours=1), metavar="DURATION",
                            help="time between checks (default: 1h)")
    run_parser.add_argument("--iterations", type=int, default=0, help="stop after this many checks (default: never)")
    run_parser.set_defaults(handler=run_command)
    history = actions.add_parser("history", parents=[database], help="the model's retraining triggers",
                                 description="Triggers of a model, newest first: when, why, run, state.")
    history.add_argument("model", metavar="MODEL")
    history.add_argument("--limit", type=_positive, default=20, help="at most this many (default: %(default)s)")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(handler=history_command)


def settings_from(args: argparse.Namespace) -> Any:
    from ingot.monitor.check import CheckSettings
    from ingot.monitor.statistics import (
        DEFAULT_ALPHA,
        DEFAULT_MIN_LABELS,
        DEFAULT_MIN_ROWS,
    )
    from pipelines.launch import launcher_for

    rows = args.window if args.window is not None or args.since is not None else DEFAULT_WINDOW
    check = CheckSettings(
        model=args.model, registry_url=args.registry or os.environ.get(REGISTRY_URL_ENV) or None,
        log_url=args.log_url or os.environ.get(LOG_URL_ENV) or None, rows=rows, since=args.since,
        alpha=args.alpha or DEFAULT_ALPHA, min_rows=args.min_rows or DEFAULT_MIN_ROWS,
        min_labels=args.min_labels or DEFAULT_MIN_LABELS, trigger=args.trigger, cooldown=args.cooldown,
        dataset_uri=args.dataset or settings.monitor_dataset(), model_repository=args.model_repository,
        kfp_host=args.host or settings.kfp_host(), kfp_experiment=args.experiment,
        kfp_namespace=args.namespace, kfp_service_account=args.service_account, image=args.image,
        evidence_only=not args.all_rows,
    )
    check.new_labels = getattr(args, "new_labels", None)
    capture = settings.capture_url(None)  # the store the gateway writes to ($INGOT_CAPTURE_URL, else ./.ingot/capture)
    if check.trigger and not args.base_data_only and check.kfp_host and not _object_store(capture):
        print(f"ingot: note: triggered runs on Kubeflow Pipelines train on the base dataset only: the capture store "
              f"{capture} is not an object store (s3://, gs://) the pipeline's steps can read; set "
              f"${settings.CAPTURE_URL_ENV}", file=sys.stderr)
    elif check.trigger and not args.base_data_only:
        from ingot.retrain.production import DEFAULT_PRODUCTION_WEIGHT, ProductionData

        # On a cluster the log URL stays out of the run's parameters: the build-data step reads
        # it from the registry Secret (key `log_url`), else uses the registry's database.
        check.production = ProductionData(
            capture_url=_absolute(capture), log_url=None if check.kfp_host else check.log_url,
            production_weight=args.production_weight or DEFAULT_PRODUCTION_WEIGHT,
            holdout_fraction=args.holdout_fraction,
            window_s=args.production_window.total_seconds() if args.production_window else None,
            max_rows=args.max_production_rows)
    if check.trigger:
        check.launcher = launcher_for(check)
    if getattr(args, "capture_url", None):
        from ingot.client import Client
        from ingot.monitor.embedding import CaptureStoreInputs, lazy_server_embedder

        check.captured = CaptureStoreInputs(args.capture_url)
        server = args.embedding_server or "http://127.0.0.1:8501"
        check.embedder = lambda version: lazy_server_embedder(lambda: Client.connect(server), args.model, version)
    return check


def _object_store(location: str) -> bool:
    return location.startswith(("s3://", "gs://"))


def _absolute(location: str) -> str:
    """A local path made absolute (the triggered run is another process); URLs as they are."""
    return location if "://" in location else str(Path(location).expanduser().resolve())


def _one_check(args: argparse.Namespace) -> int:
    from ingot.monitor.check import run_check
    from ingot.monitor.report import format_text, write_report
    outcome = run_check(settings_from(args))
    if args.report:
        write_report(outcome, args.report)
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        print(format_text(outcome))
        if args.report:
            print(f"report: {args.report}")
    if outcome.trigger_error:
        print(f"ingot: error: retraining could not start: {outcome.trigger_error}", file=sys.stderr)
    return EXIT_DRIFT if outcome.triggering else 0


def check_command(args: argparse.Namespace) -> int:
    return _one_check(args)


def run_command(args: argparse.Namespace) -> int:
    """Check forever (or --iterations times); a failing check is one stderr line, not the end."""
    done = 0
    while True:
        try:
            _one_check(args)
        except IngotError as err:
            print(f"ingot: error: {err}", file=sys.stderr, flush=True)
        except Exception as err:  # noqa: BLE001 - e.g. the database is down: report, retry next time
            print(f"ingot: error: check failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                  file=sys.stderr, flush=True)
        sys.stdout.flush()
        done += 1
        if args.iterations and done >= args.iterations:
            return 0
        time.sleep(args.interval.total_seconds())


def history_command(args: argparse.Namespace) -> int:
    from ingot.monitor.triggers import TriggerStore
    from ingot.registry import Registry, default_url
    from pipelines.launch import refresh

    with Registry.from_url(args.registry or default_url()) as registry:
        store = TriggerStore(registry.engine)
        triggers = [refresh(store, t) for t in store.history(args.model, args.limit)]
    if args.json:
        print(json.dumps([t.to_dict() for t in triggers], indent=2, sort_keys=True))
        return 0
    if not triggers:
        print(f"no retraining triggers for {args.model!r}")
        return 0
    print(f"{'#':>4}  {'created (UTC)':<20} {'state':<10} {'backend':<7} {'run':<36} reason")
    for t in triggers:
        print(f"{t.id:>4}  {t.created_at.strftime('%Y-%m-%d %H:%M:%S'):<20} {t.state:<10} {t.backend:<7} "
              f"{(t.run_id or '-'):<36} {t.reason}")
        if t.detail:
            print(f"{'':>6}{t.detail}")
    return 0
