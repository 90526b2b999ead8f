"""`ingot pipeline run|compile`: the `ingot-retrain` Kubeflow pipeline, run on this machine with
kfp's local runner (the default), submitted to a Kubeflow Pipelines endpoint (`--host`), or
compiled to the IR YAML the Kubeflow UI uploads.

kfp, TensorFlow and the registry are imported inside the handlers so `ingot --help` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingot.cli.train import add_gate_arguments, load_config
from ingot.errors import ConfigError, IngotError
from ingot.settings import IMAGE_ENV

if TYPE_CHECKING:
    from pipelines.request import PipelineRequest


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "pipeline", help="run or compile the ingot-retrain Kubeflow pipeline",
        description="The ingot-retrain pipeline (build-data -> ingest -> train -> evaluate -> publish + "
        "register, or record the rejection): run it here with kfp's local runner, submit it to Kubeflow "
        "Pipelines, or compile it to IR YAML.",
    )
    actions = parser.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)

    run = actions.add_parser(
        "run", help="run the pipeline locally (default) or submit it to a KFP endpoint (--host)",
        description="Run ingot-retrain. Locally every step runs as a subprocess of this Python "
        "environment (kfp's SubprocessRunner): no cluster, no containers. With --host the pipeline "
        "is submitted to a Kubeflow Pipelines endpoint and the run's URL printed.",
    )
    run.add_argument("--dataset", default="", metavar="URI",
                     help="dataset: an image folder path, gs:// or s3:// URI, a CIFAR-10 archive, or "
                     "bundled:digits (default: the recipe's dataset, else bundled:digits)")
    run.add_argument("--model-name", default="digits", help="model name in the repository and registry (default: %(default)s)")
    run.add_argument("--config", type=Path, help="recipe YAML (see configs/); TrainConfig defaults otherwise")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a recipe setting, e.g. --set epochs=5 (repeatable)")
    add_gate_arguments(run, int8=True)
    run.add_argument("--model-repository", default=None, metavar="PATH_OR_URI",
                     help="model repository base (local default: $INGOT_MODEL_REPOSITORY or ./model-repository; "
                     "with --host: the steps' $INGOT_MODEL_REPOSITORY unless given)")
    run.add_argument("--registry", default=None, metavar="URL",
                     help="registry database URL, local runs only (default: $INGOT_REGISTRY_URL, else SQLite in "
                     "$INGOT_DATA_DIR); the steps get it in their environment, never as an argument; with --host "
                     "use --registry-secret")
    run.add_argument("--image", default=None,
                     help=f"container image of the steps (default: ${IMAGE_ENV}, else the built-in ingot image name)")
    local = run.add_argument_group("local runs")
    local.add_argument("--pipeline-root", type=Path, default=None,
                       help="where step outputs go (default: $INGOT_DATA_DIR/pipeline-root)")
    local.add_argument("--cache", action="store_true",
                       help="reuse outputs of earlier identical steps (ingest, train, evaluate); publish, "
                       "register and reject always run")
    local.add_argument("--json", action="store_true", help="print the run's result as JSON instead of a report")
    local.add_argument("--require-blessing", action="store_true",
                       help="exit with status 3 when the gate rejects the model (for automation)")
    remote = run.add_argument_group("Kubeflow Pipelines (--host)")
    remote.add_argument("--host", default=None, metavar="URL",
                        help="submit to this Kubeflow Pipelines API endpoint instead of running locally")
    remote.add_argument("--registry-secret", default=None, metavar="NAME",
                        help="Kubernetes Secret (key `url`) holding the registry database URL the run's registry "
                        "steps read (default: the pipeline's, ingot-registry); the URL itself never becomes a run "
                        "parameter")
    remote.add_argument("--experiment", default=None, help="experiment name (default: KFP's 'Default')")
    remote.add_argument("--run-name", default=None, help="run display name (default: ingot-retrain <model> <time>)")
    remote.add_argument("--namespace", default=None, help="Kubernetes namespace (multi-user KFP)")
    remote.add_argument("--service-account", default=None,
                        help="Kubernetes service account the run's pods use (default: KFP's)")
    remote.add_argument("--accelerator-type", default=None,
                        help="train step accelerator resource, e.g. nvidia.com/gpu; '' for CPU-only")
    remote.add_argument("--accelerator-limit", type=int, default=None, help="train step accelerator count")
    remote.add_argument("--worker-accelerator-limit", type=int, default=None,
                        help="accelerators per TFJob worker when the recipe has workers > 1 (the train step "
                        "itself then only waits: give it --accelerator-limit 0)")
    run.set_defaults(handler=run_pipeline)

    compile_parser = actions.add_parser(
        "compile", help="compile the pipeline to IR YAML for the Kubeflow UI",
        description="Compile ingot-retrain to Kubeflow Pipelines IR YAML (upload it in the Kubeflow UI).",
    )
    compile_parser.add_argument("-o", "--output", type=Path, default=None,
                                help="output file (default: pipelines/compiled/ingot-retrain.yaml in the source tree)")
    compile_parser.add_argument("--image", default=None,
                                help=f"container image of the steps (default: ${IMAGE_ENV}, else the built-in ingot image name)")
    compile_parser.set_defaults(handler=compile_command)


# --- compile --------------------------------------------------------------------------------


def compile_command(args: argparse.Namespace) -> int:
    from pipelines.retrain import COMPILED_PATH, compile_pipeline

    output = args.output or COMPILED_PATH
    if output.exists() and output.is_dir():
        raise ConfigError(f"--output {output} is a directory; expected a .yaml file path")
    path = compile_pipeline(output, image=args.image)
    print(f"compiled ingot-retrain to {path} ({path.stat().st_size:,} bytes)")
    return 0


# --- run ------------------------------------------------------------------------------------


def pipeline_request(args: argparse.Namespace) -> PipelineRequest:
    """The run the command line asks for, validated here before anything runs."""
    from pipelines.request import PipelineRequest

    fields: dict[str, Any] = {
        "model_name": args.model_name, "dataset_uri": args.dataset or "",
        "min_accuracy": args.min_accuracy, "min_class_f1": args.min_class_f1, "max_regression": args.max_regression,
        "int8_max_loss": args.int8_max_loss, "model_repository": args.model_repository or None,
        "registry_url": args.registry or None,
    }
    if args.host:
        if args.registry:
            raise ConfigError("--registry: with --host the registry URL (and its password) would be a KFP run "
                              "parameter anyone who can see the run reads; store it in a Secret under the key `url` "
                              "and pass --registry-secret NAME")
        fields.update(accelerator_type=args.accelerator_type, accelerator_limit=args.accelerator_limit,
                      worker_accelerator_limit=args.worker_accelerator_limit, registry_secret=args.registry_secret)
    return PipelineRequest.from_config(load_config(args), **fields)


_REMOTE_ONLY = ("experiment", "run_name", "namespace", "service_account", "accelerator_type", "accelerator_limit",
                "worker_accelerator_limit", "registry_secret")
_LOCAL_ONLY = ("pipeline_root", "cache", "json", "require_blessing")


def _check_mode(args: argparse.Namespace) -> None:
    """Refuse flags of the other mode instead of silently ignoring them."""
    wrong = _LOCAL_ONLY if args.host else _REMOTE_ONLY
    given = [name for name in wrong if getattr(args, name) not in (None, False)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        mode = "only for local runs, not with --host" if args.host else "only with --host URL (a KFP endpoint)"
        raise ConfigError(f"{flags}: {mode}")


def run_pipeline(args: argparse.Namespace) -> int:
    _check_mode(args)
    if args.host:
        return submit(args)
    import sys

    from pipelines.launch import run_request_locally

    request = pipeline_request(args).for_local_run()
    console = sys.stdout  # the run redirects sys.stdout into the log; progress goes here

    def say(line: str) -> None:
        print(line, file=console, flush=True)

    report = run_request_locally(request, pipeline_root=args.pipeline_root, image=args.image, cache=args.cache,
                                 progress=None if args.json else say)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_report(report))
    blessed = bool((report["record"].get("gate") or {}).get("blessed"))
    return 3 if args.require_blessing and not blessed else 0


def format_report(report: dict[str, Any]) -> str:
    from ingot.evaluate.metrics import EvaluationReport

    entry = report["record"]
    gate = entry.get("gate") or {}
    steps = ", ".join(f"{s['name']} {s['seconds']:.1f}s" for s in report["steps"])
    lines = [f"\nfinished in {report['seconds']:.1f}s ({steps})"]
    if report["cached_steps"]:
        lines.append(f"cached: {', '.join(report['cached_steps'])}")
    lines += ["", "== Gate decision"]
    if gate.get("blessed"):
        lines.append(f"BLESSED: all {len(gate.get('checks', []))} checks passed")
    else:
        lines.append("REJECTED:")
        lines += [f"  - {reason}" for reason in gate.get("reasons", [])]
    versus = [c for c in gate.get("checks", []) if c["name"].endswith("_vs_champion")]
    if versus:
        lines += [f"  {c['name'].replace('_vs_champion', '')}: {c['value']:.4f} vs champion floor {c['threshold']:.4f}"
                  f" ({'ok' if c['passed'] else 'regressed'})" for c in versus]
    else:
        lines.append("  no champion to compare with yet")
    with contextlib.suppress(IngotError, KeyError, TypeError):
        lines += ["", "== Per-class metrics (held-out test split)",
                  EvaluationReport.from_dict(entry["metrics"]).per_class_table()]
    lines += ["", "== Published version"]
    if entry["version"] is None:
        lines.append("nothing published (rejected)")
    else:
        state = "published" if report["published_created"] is not False else "already published (same model_sha256)"
        lines.append(f"{state}: {entry['name']} version {entry['version']} at {entry['artifact_uri']}")
        lines.append(f"  model_sha256 {entry['model_sha256']}")
    lines += ["", f"== Registry entry ({report['registry_url']})"]
    label = f"{entry['name']}:{entry['version']}" if entry["version"] is not None else f"{entry['name']} (rejection #{entry['id']})"
    champion = report["champion"]
    champion_note = f"; champion is {entry['name']}:{champion}" if champion is not None else "; no champion yet"
    lines += [
        f"{label}  record #{entry['id']}  stage {entry['stage'] or '-'}  status {entry['status']}{champion_note}",
        f"  pipeline run  {entry['pipeline_run_id'] or '-'}",
        f"  data hash     {entry['data_hash'] or '-'}",
        f"  registered    {entry['created_at']} by {entry['registered_by']}",
    ]
    for event in report["events"]:
        source = event["from_stage"] or "(new)"
        lines.append(f"  {event['at']}  {source} -> {event['to_stage']}: {event['reason']}")
    show = f"{entry['name']}:{entry['version']}" if entry["version"] is not None else f"{entry['name']}:#{entry['id']}"
    run_dir = report["run_dir"]
    if run_dir:
        lines += ["", f"reports: {run_dir}/ingest/data_report (HTML: class counts, sample grid), "
                      f"{run_dir}/train/training_curves (HTML), {run_dir}/evaluate/evaluation_report (HTML)"]
    lines += [f"details: ingot models show {show}; step outputs: {run_dir or '-'}"]
    return "\n".join(lines)


# --- submit to Kubeflow Pipelines ---------------------------------------------------------------


def submit(args: argparse.Namespace) -> int:
    """Submit ingot-retrain to the KFP API at --host and print the run's URL."""
    from pipelines.submit import submit_pipeline

    request = pipeline_request(args)
    arguments = request.arguments()
    submitted = submit_pipeline(
        args.host, request, image=args.image, run_name=args.run_name, experiment=args.experiment,
        namespace=args.namespace, service_account=args.service_account,
    )
    print(f"submitted run {submitted.run_id} ({submitted.run_name!r}) to {submitted.host}")
    print(f"run URL: {submitted.url}")
    if "model_repository" not in arguments:
        print("note: without --model-repository the steps read $INGOT_MODEL_REPOSITORY from their environment "
              "(e.g. a PodDefault); the first step fails if it is missing")
    return 0
