"""`ingot rollout start|status|promote|rollback|readmit|run|report`: A/B rollouts decided by a sequential
test on labelled accuracy, acting through local files or the Kubernetes API.

Heavy imports (SQLAlchemy, scipy, the kubernetes client, matplotlib) happen inside handlers.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path
from typing import Any

from ingot.errors import ConfigError
from ingot.settings import LOG_URL_ENV, REGISTRY_URL_ENV, ROLLOUT_TARGET_ENV, rollout_target


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", metavar="URL", default=None,
                        help=f"registry database URL; default ${REGISTRY_URL_ENV}, else the SQLite file in the data directory")
    common.add_argument("--log-url", metavar="URL", default=None,
                        help=f"inference-log database URL; default ${LOG_URL_ENV}, else the registry's database")

    parser = subparsers.add_parser(
        "rollout", help="A/B rollouts: sequential test on accuracy, then promotion or rollback",
        description="Test a challenger against the champion on live traffic and labelled feedback; "
        "promote it or roll it back automatically, recording every step and its evidence.",
    )
    actions = parser.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)

    start = actions.add_parser("start", parents=[common], help="start a rollout of a challenger version",
                               description="Record a rollout (state pending) and make VERSION the challenger; "
                               "`ingot rollout run` then warms, routes and decides.")
    start.add_argument("model", metavar="MODEL")
    start.add_argument("--challenger", type=int, required=True, metavar="VERSION")
    start.add_argument("--steps", default="10,50", metavar="W1,W2",
                       help="challenger traffic percents, one analysis step each (default 10,50)")
    start.add_argument("--policy", type=Path, metavar="FILE", help="YAML/JSON policy (alpha, tau, min_labels, ...)")
    start.add_argument("--target", type=Path, metavar="FILE",
                       help=f"YAML/JSON actuator target (default ${ROLLOUT_TARGET_ENV}, else built from the options below)")
    start.add_argument("--routes", metavar="FILE", help="local: the gateway's routing file (ingot gateway --routes)")
    for arm in ("champion", "challenger"):
        start.add_argument(f"--{arm}-rest", metavar="URL", help=f"local: REST URL of the {arm} server")
        start.add_argument(f"--{arm}-grpc", metavar="HOST:PORT", help=f"local: gRPC address of the {arm} server")
        start.add_argument(f"--{arm}-model-config", metavar="FILE",
                           help=f"local: the {arm} server's --model_config_file (the controller rewrites it)")
    start.add_argument("--base-path", metavar="DIR", help="local: the model's directory in the model repository")
    start.add_argument("--feedback-token-file", metavar="FILE",
                       help="local: the gateway's feedback token file (routing table feedback_token_file); labels "
                       "are evidence, so only its holders should give them")
    start.add_argument("--pin-token-file", metavar="FILE",
                       help="local: the token file pins need (routing table pin_token_file)")
    start.add_argument("--trusted-caller-header", metavar="HEADER",
                       help="local: the caller header when the edge in front of the gateway sets it (sticky rows "
                       "then count as evidence; routing table trusted_caller_header)")
    start.add_argument("--capture-sample", type=float, default=None, metavar="SHARE",
                       help="local: keep input capture on at this share of rows in every routing table the "
                       "controller writes (routing table capture.sample; docs/capture.md)")
    start.add_argument("--cache-ttl-s", type=int, default=None, metavar="SECONDS",
                       help="local: keep the gateway's prediction cache on in every routing table the controller "
                       "writes, answers fresh for SECONDS (routing table cache.ttl_s; docs/gateway.md)")
    start.add_argument("--cache-stale-ttl-s", type=int, default=None, metavar="SECONDS",
                       help="local: with --cache-ttl-s, how long a copy is kept past the TTL for the 'cached' "
                       "fallback step (cache.stale_ttl_s)")
    start.add_argument("--cache-max-bytes", type=int, default=None, metavar="BYTES",
                       help="local: with --cache-ttl-s, the largest answer cached (cache.max_bytes)")
    start.add_argument("--fallback", default=None, metavar="STEP,...",
                       help="local: the fallback chain in every table, in order, from other_arm, previous_champion, "
                       "cached, default (routing table fallback)")
    start.add_argument("--default-class-id", type=int, default=None, metavar="N",
                       help="local: the class the 'default' fallback step answers (routing table default_answer)")
    start.add_argument("--deadline-ms", type=int, default=None, metavar="MS",
                       help="local: the per-request deadline in every table (routing table deadline_ms)")
    for key, meta, kind in (("rest", "URL", str), ("grpc", "HOST:PORT", str), ("version", "VERSION", int)):
        start.add_argument(f"--previous-champion-{key}", type=kind, default=None, metavar=meta,
                           help=f"local: the {key} of the server the 'previous_champion' fallback step asks "
                           "(routing table upstreams.previous_champion)")
    start.add_argument("--actor", default=None, help="who starts it (default: the user name)")
    start.set_defaults(handler=run_start)

    status = actions.add_parser("status", parents=[common], help="state, per-arm figures, interval, decision",
                                description="The rollout's state; per arm: requests, labelled rows, accuracy, "
                                "error rate, p50 and p99 latency; the difference with its always-valid interval; SRM p; the "
                                "decision and its reasons.")
    status.add_argument("model", nargs="?", metavar="MODEL", help="only this model (default: every model's latest)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=run_status)

    for name, text in (("promote", "promote the challenger now (manual override)"),
                       ("rollback", "roll the challenger back now (manual override)")):
        override = actions.add_parser(name, parents=[common], help=text,
                                      description=f"{text[0].upper()}{text[1:]}; recorded with the actor, the reason "
                                      "and the figures at this moment.")
        override.add_argument("model", metavar="MODEL")
        override.add_argument("--reason", required=True, help="why (recorded)")
        override.add_argument("--actor", default=None, help="who (default: the user name)")
        override.set_defaults(handler=run_override, decision=name)

    readmit = actions.add_parser(
        "readmit", parents=[common], help="put a rejected version back to candidate (testable again)",
        description="A rolled-back challenger is rejected; this makes a READY rejected VERSION a candidate again "
        "(e.g. after a rollback caused by a server's trouble, or by evidence someone forged), recorded in the "
        "registry's stage history with the actor and the reason. `ingot rollout start` can then test it again.")
    readmit.add_argument("model", metavar="MODEL")
    readmit.add_argument("version", type=int, metavar="VERSION")
    readmit.add_argument("--reason", required=True, help="why (recorded)")
    readmit.add_argument("--actor", default=None, help="who (default: the user name)")
    readmit.set_defaults(handler=run_readmit)

    run = actions.add_parser("run", parents=[common], help="the controller loop (or one pass with --once)",
                             description="Reconcile every unfinished rollout every --interval seconds; with "
                             "--port, also serve the judge endpoint GET /v1/rollouts/MODEL/verdict and /metrics. A "
                             "model whose last rollout's policy has auto: true gets its next rollout on its own when "
                             "a triggered retraining run registers a blessed candidate (docs/rollout.md).")
    run.add_argument("--once", action="store_true", help="one pass, then exit (for a CronJob)")
    run.add_argument("--interval", type=float, default=10.0, metavar="SECONDS")
    run.add_argument("--port", type=int, default=None, help="serve the judge endpoint and metrics on this port")
    run.add_argument("--host", default="127.0.0.1",
                     help="address the judge endpoint binds (default 127.0.0.1; in a pod, its own address)")
    run.add_argument("--judge-timeout", type=float, default=10.0, metavar="SECONDS",
                     help="close a judge connection that sends nothing for this long (default 10)")
    run.add_argument("--lease-ttl", type=float, default=60.0, metavar="SECONDS",
                     help="how long this controller's lease on a model lasts without renewal")
    run.set_defaults(handler=run_loop)

    report = actions.add_parser("report", parents=[common], help="HTML report with plots",
                                description="Accuracy per arm as labels accumulate, the always-valid interval of "
                                "the difference narrowing to the decision, errors and latency per arm, the SRM "
                                "check, the decision and its reasons.")
    report.add_argument("model", metavar="MODEL")
    report.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.html")
    report.add_argument("--rollout", type=int, default=None, metavar="ID", help="this rollout (default: the latest)")
    report.set_defaults(handler=run_report)


def _actor(given: str | None) -> str:
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def open_controller(args: argparse.Namespace, **kwargs: Any):  # type: ignore[no-untyped-def]
    from ingot.inference_log.store import InferenceLogStore
    from ingot.registry import Registry
    from ingot.rollout.controller import Controller

    registry = Registry.from_url(args.registry or os.environ.get(REGISTRY_URL_ENV) or None)
    log_url = args.log_url or os.environ.get(LOG_URL_ENV)
    log_engine = InferenceLogStore.from_url(log_url).engine if log_url else None
    return Controller(registry, log_engine, **kwargs)


def _load_mapping(path: Path, what: str) -> dict[str, Any]:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML/JSON: {str(err).splitlines()[0]}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must be a mapping")
    return loaded


def build_target(args: argparse.Namespace) -> dict[str, Any]:
    """The actuator target: --target FILE, else $INGOT_ROLLOUT_TARGET, else the local options."""
    if args.target is not None:
        return _load_mapping(args.target, "target file")
    from_env = rollout_target()
    if from_env:
        try:
            given = json.loads(from_env)
        except ValueError:
            raise ConfigError(f"${ROLLOUT_TARGET_ENV} is not valid JSON") from None
        if not isinstance(given, dict):
            raise ConfigError(f"${ROLLOUT_TARGET_ENV} must be a JSON object")
        return given
    if not args.routes:
        raise ConfigError("say where to act: --routes FILE with --champion-rest/--challenger-rest (one machine), "
                          f"--target FILE, or ${ROLLOUT_TARGET_ENV}")
    target: dict[str, Any] = {"actuator": "local", "routes_file": str(Path(args.routes).resolve())}
    for arm in ("champion", "challenger"):
        rest, grpc = getattr(args, f"{arm}_rest"), getattr(args, f"{arm}_grpc")
        if not rest or not grpc:
            raise ConfigError(f"--{arm}-rest and --{arm}-grpc are required with --routes (the {arm} server's "
                              "REST URL and gRPC host:port)")
        spec = {"rest": rest, "grpc": grpc}
        config = getattr(args, f"{arm}_model_config")
        if config:
            if not args.base_path:
                raise ConfigError(f"--{arm}-model-config needs --base-path (the model's directory)")
            spec.update(model_config_file=str(Path(config).resolve()), base_path=str(Path(args.base_path).resolve()))
        target[arm] = spec
    for key in ("feedback_token_file", "pin_token_file"):
        if getattr(args, key, None):
            target[key] = str(Path(getattr(args, key)).resolve())
    if getattr(args, "trusted_caller_header", None):
        target["trusted_caller_header"] = args.trusted_caller_header
    if getattr(args, "capture_sample", None) is not None:
        from ingot.capture.policy import parse_policy

        target["capture"] = parse_policy({"sample": args.capture_sample}).as_dict()  # checked here, not later
    target.update(_resilience(args))
    return target


def _resilience(args: argparse.Namespace) -> dict[str, Any]:
    """The target's cache, fallback, default answer, deadline and previous-champion upstream from
    the local flags, checked by the gateway's own parser here rather than at the first table."""
    from ingot.gateway.fallback import PolicyError, parse_resilience

    doc: dict[str, Any] = {}
    if getattr(args, "cache_ttl_s", None) is not None:
        doc["cache"] = {"ttl_s": args.cache_ttl_s}
        for flag, key in (("cache_stale_ttl_s", "stale_ttl_s"), ("cache_max_bytes", "max_bytes")):
            if getattr(args, flag, None) is not None:
                doc["cache"][key] = getattr(args, flag)
    elif getattr(args, "cache_stale_ttl_s", None) is not None or getattr(args, "cache_max_bytes", None) is not None:
        raise ConfigError("--cache-stale-ttl-s and --cache-max-bytes need --cache-ttl-s (the cache is off without it)")
    if getattr(args, "fallback", None):
        doc["fallback"] = [step.strip() for step in args.fallback.split(",") if step.strip()]
    if getattr(args, "default_class_id", None) is not None:
        doc["default_answer"] = {"class_id": args.default_class_id}
    if getattr(args, "deadline_ms", None) is not None:
        doc["deadline_ms"] = args.deadline_ms
    previous = {key: getattr(args, f"previous_champion_{key}", None) for key in ("rest", "grpc", "version")}
    if any(value is not None for value in previous.values()):
        missing = [f"--previous-champion-{key}" for key, value in previous.items() if value is None]
        if missing:
            raise ConfigError(f"the previous champion needs {', '.join(missing)} as well (its REST URL, gRPC "
                              "host:port and version)")
        doc["previous_champion"] = previous
    try:
        parse_resilience(doc, has_previous_champion="previous_champion" in doc)
    except PolicyError as err:
        raise ConfigError(str(err)) from None
    return doc


def run_start(args: argparse.Namespace) -> int:
    from ingot.cli.ab import load_policy

    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--steps {args.steps!r} must be comma-separated percents, e.g. 10,50") from None
    policy = load_policy(args.policy)
    target = build_target(args)
    controller = open_controller(args)
    try:
        rollout = controller.start(args.model, args.challenger, steps=steps, policy=policy, target=target,
                                   actor=_actor(args.actor))
    finally:
        controller.registry.close()
    print(f"rollout #{rollout.id} {rollout.experiment}: {args.model}:{rollout.challenger_version} against champion "
          f"{args.model}:{rollout.champion_version}, steps {rollout.steps}; `ingot rollout run` carries it out")
    return 0


def run_readmit(args: argparse.Namespace) -> int:
    from ingot.registry import Registry, Stage

    if not args.reason.strip():
        raise ConfigError("--reason must say why the version is re-admitted")
    with Registry.from_url(args.registry or os.environ.get(REGISTRY_URL_ENV) or None) as registry:
        current = registry.get_version(args.model, args.version)
        if current.stage is not Stage.REJECTED:
            stage = current.stage.value if current.stage is not None else "no stage"
            raise ConfigError(f"{args.model}:{args.version} is {stage}, not rejected; only a rejected version is "
                              "re-admitted")
        actor = _actor(args.actor)
        registry.transition(args.model, args.version, Stage.CANDIDATE, actor=actor,
                            reason=f"re-admitted by {actor}: {args.reason.strip()}")
    print(f"{args.model}:{args.version} is a candidate again (was rejected); `ingot rollout start {args.model} "
          f"--challenger {args.version}` tests it")
    return 0


def status_document(controller: Any, model: str) -> dict[str, Any]:
    from ingot.rollout.service import verdict_document

    document = verdict_document(controller, model)
    rollout = controller.store.latest(model)
    document["transitions"] = [t.to_dict() for t in controller.store.get(rollout.id).transitions]
    document["policy"] = rollout.policy
    return document


def run_status(args: argparse.Namespace) -> int:
    controller = open_controller(args)
    try:
        if args.model:
            models = [args.model]
        else:
            models = sorted({r.model for r in controller.store.list()})
        documents = [status_document(controller, m) for m in models]
    finally:
        controller.registry.close()
    if args.json:
        print(json.dumps(documents if not args.model else documents[0], indent=2, default=float))
        return 0
    if not documents:
        print("no rollouts")
    for doc in documents:
        print(format_status(doc))
    return 0


def format_status(doc: dict[str, Any]) -> str:
    header = (f"{doc['model']}: rollout #{doc['rollout']} {doc['experiment']}  state {doc['state']}  "
              f"challenger v{doc['challenger_version']} at {doc['weight']}% vs champion v{doc['champion_version']}")
    lines = [header]
    first = (doc.get("transitions") or [None])[0]
    if first is not None:
        lines.append(f"  started by {first['actor']}: {first['reason']}")
    counts = doc.get("counts") or {}
    if counts:
        lines.append(f"  {'arm':<11}{'requests':>9}{'labelled':>9}{'accuracy':>10}{'errors':>9}{'p50 ms':>9}"
                     f"{'p99 ms':>9}")
        for arm in ("champion", "challenger"):
            c = counts.get(arm) or {}
            accuracy = f"{c['accuracy']:.2%}" if c.get("accuracy") is not None else "n/a"
            errors = f"{c['error_rate']:.2%}" if c.get("error_rate") is not None else "n/a"
            p50, p99 = (f"{c[key]:.1f}" if c.get(key) is not None else "n/a"
                        for key in ("p50_latency_ms", "p99_latency_ms"))
            lines.append(f"  {arm:<11}{c.get('requests', 0):>9}{c.get('labelled', 0):>9}{accuracy:>10}{errors:>9}"
                         f"{p50:>9}{p99:>9}")
    if doc.get("interval"):
        low, high = doc["interval"]
        lines.append(f"  difference {doc['difference']:+.4f}, always-valid interval [{low:+.4f}, {high:+.4f}], "
                     f"statistic {doc['statistic']:.4g}")
    srm = doc.get("srm_p")
    lines.append(f"  sample-ratio check: p = {srm:.3g}" if srm is not None else
                 "  sample-ratio check: not computed (it needs at least 8 requests split at random per arm in "
                 "this step; sticky callers' requests are not independent draws)")
    lines.append(f"  decision: {doc['decision']}")
    lines.extend(f"  - {reason}" for reason in doc.get("reasons") or [])
    lines.extend(f"  - held: {hold}" for hold in doc.get("holds") or [])
    return "\n".join(lines)


def run_override(args: argparse.Namespace) -> int:
    controller = open_controller(args)
    try:
        rollout = controller.override(args.model, args.decision, reason=args.reason, actor=_actor(args.actor))
    finally:
        controller.registry.close()
    print(f"rollout #{rollout.id} of {args.model}: {rollout.state}")
    return 0


def run_loop(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from ingot.rollout.service import JudgeServer, RolloutMetrics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = RolloutMetrics()
    controller = open_controller(args, lease_ttl_s=args.lease_ttl, on_transition=metrics.on_transition,
                                 trigger_refresh=_refresh_trigger)
    if args.once:
        try:
            for rollout in controller.reconcile_all():
                metrics.observe(rollout)
                print(f"rollout #{rollout.id} of {rollout.model}: {rollout.state}")
        finally:
            controller.registry.close()
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = (JudgeServer(controller, metrics, args.host, args.port, timeout_s=args.judge_timeout).start()
              if args.port is not None else None)
    try:
        while not stop.is_set():
            try:
                for rollout in controller.reconcile_all():
                    metrics.observe(rollout)
            except Exception:
                metrics.reconcile_errors.inc()
                logging.getLogger("ingot.rollout").exception("reconcile failed; retrying")
            stop.wait(args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
        try:
            controller.release_leases()
        finally:
            controller.registry.close()
    return 0


REFRESH_TIMEOUT_S = 10.0  # a KFP API the controller cannot reach must not stall its pass


def _refresh_trigger(store: Any, trigger: Any) -> Any:
    """A triggered run's state brought up to date (a KFP run: asked of its API), before the
    controller rolls out what it registered (policy `auto: true`). Unanswered within
    REFRESH_TIMEOUT_S (e.g. a NetworkPolicy drops the packets): unchanged, so the version waits for
    the monitor's next check to record the run's end."""
    import threading

    from pipelines.launch import refresh

    key = (trigger.host, trigger.run_id)
    pending = _ASKING.get(key)
    if pending is not None and pending.is_alive():
        return trigger  # the last question is still unanswered: never more than one thread per trigger
    answer: list[Any] = []
    asking = threading.Thread(target=lambda: answer.append(refresh(store, trigger)), name="trigger-refresh",
                              daemon=True)
    _ASKING[key] = asking
    asking.start()
    asking.join(REFRESH_TIMEOUT_S)
    return answer[0] if answer else trigger


_ASKING: dict[tuple[Any, Any], Any] = {}  # (KFP host, run id) -> the thread asking about that run


def run_report(args: argparse.Namespace) -> int:
    from ingot.rollout.report import write_report

    controller = open_controller(args)
    try:
        rollout = controller.store.get(args.rollout) if args.rollout else controller.store.latest(args.model)
        if rollout.model != args.model:
            raise ConfigError(f"rollout #{rollout.id} is of {rollout.model}, not {args.model}")
        write_report(controller, rollout, args.output)
    finally:
        controller.registry.close()
    print(f"wrote {args.output}")
    return 0
