"""`ingot loop` (what `make run` runs): the whole loop on one machine, stage by stage.

1. retrain through the `ingot-retrain` pipeline (kfp's local runner): a first champion when there
   is none, then a challenger from a second recipe;
2. serve: one `ingot serve` for the champion, one for the challenger, `ingot gateway` in front,
   on free loopback ports; the routing table is the file the rollout controller writes;
3. live traffic through the gateway, ground truth for a share of the rows after a delay;
4. `ingot rollout` decides on labelled accuracy and carries out the promotion or the rollback;
5. the traffic drifts (and keeps flowing, paced); `ingot monitor check --trigger` flags it and
   starts a retraining run, which builds the labelled captured production rows and the base data
   into a dataset version and trains on it; the cooldown is recorded;
6. with the policy's `auto: true` the rollout controller (in the background since stage 4) makes
   the blessed candidate the challenger on its own, and it is A/B-tested against the champion on the drifted stream; after a promotion the stream is
   measured again (live accuracy before drift, under drift with the old champion, after);
7. every process is stopped (on success, failure and Ctrl-C), and the reports are listed.

The live traffic comes from a pool carved out of the dataset before anything trains on it
(ingot.loop.pool), so no held-out figure ever sees an image a model trained on.

Each stage runs the same `ingot` commands a person would type; this module only sequences them
and measures.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingot import settings
from ingot.errors import IngotError
from ingot.loop.processes import Supervisor, free_port
from ingot.loop.recipes import newest_record_id, policy_auto, recipe_reason
from ingot.loop.rollout_steps import RolloutSteps
from ingot.loop.shifts import Drift, PhotoShift
from ingot.loop.summary import LoopResult, StageTime
from ingot.loop.traffic import BackgroundTraffic
from ingot.loop.triggered import TriggeredRuns
from ingot.protocol import headers as wire

# The stretches of traffic live accuracy is reported for.
OLD_CHAMPION, HEALING, HEALED = "drift, old champion", "drift, healing A/B", "drift, healed champion"
AUTO_START_TIMEOUT_S = 120.0  # for the controller (`--interval 1`) to start the healed candidate's rollout


class LoopError(IngotError):
    """A stage of the loop could not go on; the message says which and why."""


@dataclass
class LoopOptions:
    model: str = "digits"
    config: Path = Path("configs/digits-cnn.yaml")
    challenger_config: Path = Path("configs/digits-cnn-challenger.yaml")
    policy: Path = Path("configs/rollout-local.yaml")
    steps: str = "50"
    dataset: str = "bundled:digits"
    model_repository: Path = Path("model-repository")
    workdir: Path = Path(".ingot/loop")
    registry_url: str | None = None
    pipeline_set: list[str] = field(default_factory=list)  # extra `--set key=value` for every training run
    gate: dict[str, float] = field(default_factory=dict)     # min_accuracy, min_class_f1, max_regression
    callers: int = 200
    batch: int = 8
    concurrency: int = 8
    label_share: float = 0.5
    label_delay_s: tuple[float, float] = (1.0, 3.0)
    max_requests: int = 4000        # the A/B stage's traffic budget
    drift_requests: int = 1500      # the drift stage's traffic budget
    monitor_window: int = 400       # rows per drift check
    check_every: int = 30           # requests between drift checks
    seed: int = 0
    live_per_class: int = 40        # images per class carved out of a bundled/folder dataset as the live pool
    capture_sample: float = 1.0     # share of predicted rows whose input the gateway stores
    drift_rate: float = 12.0        # requests/s while the monitor watches
    retrain_rate: float = 4.0       # requests/s while the triggered run trains (in a cluster it has nodes of its own)
    production_weight: int = 3      # each labelled production row appears this many times in train
    max_production_rows: int = 1000  # the newest labelled production inputs a triggered run uses
    heal_requests: int = 3000       # traffic budget of the healed candidate's A/B test
    after_requests: int = 150       # requests measured on the drifted stream after the promotion


class Loop(RolloutSteps):
    def __init__(self, options: LoopOptions, *, out: Callable[[str], None] = print) -> None:
        from pipelines.request import local_registry_url

        self.o = options
        self.out = out
        self.workdir = options.workdir.expanduser().resolve()
        self.repository = options.model_repository.expanduser().resolve()
        self.registry_url = local_registry_url(options.registry_url)
        self.supervisor = Supervisor(self.workdir / "logs")
        self.result = LoopResult()
        self.triggered = TriggeredRuns(self.registry_url, options.model, self.say)
        self.dataset = options.dataset  # the base dataset every run trains on (the live pool carved out)
        self.live: Path | None = None
        self.capture_url = str(self.workdir / "capture")

    # ------------------------------------------------------------------ plumbing

    def say(self, line: str = "") -> None:
        self.out(line)

    def ingot(self, args: list[str], *, ok: tuple[int, ...] = (0,), indent: str = "    ",
              collect: list[str] | None = None) -> int:
        """Run one `ingot` command as a person would, its output indented under the stage (and
        appended to `collect` when given)."""
        self.say(f"  $ ingot {' '.join(args)}")
        env = {**os.environ, settings.TF_LOG_LEVEL_ENV: settings.tf_log_level(),
               settings.REGISTRY_URL_ENV: self.registry_url, settings.CAPTURE_URL_ENV: self.capture_url}
        process = subprocess.Popen([sys.executable, "-m", "ingot.cli.main", *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, text=True)
        assert process.stdout is not None
        try:
            for line in process.stdout:
                self.say(indent + line.rstrip("\n"))
                if collect is not None:
                    collect.append(line.rstrip("\n"))
            code = process.wait()
        except BaseException:
            process.terminate()
            process.wait(timeout=30)
            raise
        if code not in ok:
            raise LoopError(f"`ingot {args[0]} {args[1] if len(args) > 1 else ''}` exited with status {code}")
        return code

    def registry(self) -> Any:
        from ingot.registry import Registry

        return Registry.from_url(self.registry_url)

    def _champion(self) -> Any:
        """The model's champion record, or None (also when the model was never registered)."""
        from ingot.errors import NotFoundError

        with self.registry() as registry:
            try:
                return registry.champion(self.o.model)
            except NotFoundError:
                return None

    def _stage(self, name: str, started: float) -> None:
        self.result.stages.append(StageTime(name, time.perf_counter() - started))

    # ------------------------------------------------------------------ stages

    def run(self) -> LoopResult:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._retrain()
            if self.result.challenger is not None:
                self._serve()
                self._ab_test()
                self._drift()
            return self.result
        finally:
            self.result.stopped = self.supervisor.stop_all()
            stopped = self.triggered.stop()
            if stopped:
                self.result.stopped.append(stopped)
            signal.signal(signal.SIGTERM, previous)

    def _carve(self) -> None:
        """Carve the live pool out of the dataset before anything trains on it (ingot.loop.pool)."""
        from ingot.data.sources import BUNDLED, ensure_digits_folder
        from ingot.loop.pool import carve

        if self.o.dataset in BUNDLED:
            source = ensure_digits_folder()
        elif Path(self.o.dataset).is_dir():
            source = Path(self.o.dataset)
        else:
            self.say(f"  {self.o.dataset} is no image folder: the live traffic comes from its test split")
            return
        carved = carve(source, self.workdir / "data", self.o.live_per_class)
        self.dataset, self.live = str(carved.base), carved.live
        self.say(f"  live pool: {carved.describe()}")

    def _pipeline(self, config: Path) -> None:
        args = ["pipeline", "run", "--config", str(config), "--model-name", self.o.model,
                "--dataset", self.dataset, "--model-repository", str(self.repository)]
        for item in self.o.pipeline_set:
            args += ["--set", item]
        for name, value in sorted(self.o.gate.items()):
            args += [f"--{name.replace('_', '-')}", f"{value:g}"]
        output: list[str] = []
        self.ingot(args, collect=output)
        for line in output:
            if line.startswith("details:") and "step outputs: " in line:
                run_dir = line.split("step outputs: ", 1)[1].strip()
                self.result.reports[f"pipeline run ({config.name})"] = (
                    f"{run_dir}/ingest/data_report, {run_dir}/train/training_curves, "
                    f"{run_dir}/evaluate/evaluation_report")

    def _retrain(self) -> None:
        started = time.perf_counter()
        self.say("== 1/5 Retrain (the ingot-retrain pipeline on kfp's local runner)")
        self._carve()
        champion = self._champion()
        if champion is None:
            self.say(f"  no champion for {self.o.model!r} yet: training the first model with {self.o.config}")
            self._pipeline(self.o.config)
            champion = self._champion()
            if champion is None:
                raise LoopError(f"the first model was not blessed, so there is no champion to compare with; "
                                f"see the gate's reasons above (recipe {self.o.config})")
        else:
            self.say(f"  champion: {self.o.model}:{champion.version} (the baseline for this run)")
        self.result.champion_before = champion.version
        self.say(f"  challenger recipe {self.o.challenger_config}, because:")
        for line in recipe_reason(self.o.challenger_config):
            self.say(f"    {line}")
        with self.registry() as registry:
            newest_before = newest_record_id(registry, self.o.model)
        self._pipeline(self.o.challenger_config)
        with self.registry() as registry:
            records = [r for r in registry.list_versions(self.o.model, limit=5) if r.id > newest_before]
        record = records[0] if records else None
        if record is None or record.version is None or record.stage != "candidate":
            why = "rejected by the gate" if record is not None and record.version is None else "not published"
            self.say(f"  the challenger was {why}: there is nothing to A/B test this time (the champion stays)")
        else:
            self.result.challenger = record.version
            self.say(f"  challenger: {self.o.model}:{record.version} (candidate) against champion "
                     f"{self.o.model}:{champion.version}")
        self._stage("retrain", started)

    def _serve(self) -> None:
        from ingot.gateway.routing import dump
        from ingot.rollout.routing import model_config_text, routing_table

        started = time.perf_counter()
        self.say("")
        self.say("== 2/5 Serve: champion and challenger model servers behind the gateway")
        self.workdir.mkdir(parents=True, exist_ok=True)
        champion, challenger = self.result.champion_before, self.result.challenger
        assert champion is not None and challenger is not None
        base_path = str(self.repository / self.o.model)
        self.ports = {name: free_port() for name in (
            "champion_grpc", "champion_rest", "challenger_grpc", "challenger_rest", "gateway_grpc",
            "gateway_rest", "controller")}
        self.files = {name: self.workdir / f"{name}" for name in ("champion.config", "challenger.config", "routes.yaml",
                                                                  "feedback-token")}
        # The rollout reads the log, so labels come only from the labeller holding this token; the
        # traffic driver stands for the edge that sets the caller key, which the table trusts.
        import secrets

        self.feedback_token = secrets.token_hex(32)
        self.files["feedback-token"].write_text(self.feedback_token + "\n")
        self.files["feedback-token"].chmod(0o600)
        self.files["champion.config"].write_text(model_config_text(self.o.model, base_path, [champion], champion))
        self.files["challenger.config"].write_text(model_config_text(self.o.model, base_path, [challenger], challenger))
        self.target: dict[str, Any] = {"actuator": "local", "routes_file": str(self.files["routes.yaml"]),
                                       "drain_s": 2.0, "feedback_token_file": str(self.files["feedback-token"]),
                                       "trusted_caller_header": wire.CALLER,
                                       "capture": {"sample": self.o.capture_sample}}
        for arm in ("champion", "challenger"):
            self.target[arm] = {"rest": f"http://127.0.0.1:{self.ports[arm + '_rest']}",
                                "grpc": f"127.0.0.1:{self.ports[arm + '_grpc']}",
                                "model_config_file": str(self.files[f"{arm}.config"]), "base_path": base_path}
        table = routing_table(self.target, model=self.o.model, experiment=f"{self.o.model}-v{champion}",
                              weight=0, champion_version=champion, challenger_version=champion)
        self.files["routes.yaml"].write_text(dump(table))
        servers = {}
        for arm in ("champion", "challenger"):
            servers[arm] = self.supervisor.start(f"serve-{arm}", [
                "serve", "--model_config_file", str(self.files[f"{arm}.config"]),
                "--model_config_file_poll_wait_seconds", "1",
                "--port", str(self.ports[arm + "_grpc"]), "--rest_api_port", str(self.ports[arm + "_rest"])])
        gateway = self.supervisor.start("gateway", [
            "gateway", "--routes", str(self.files["routes.yaml"]), "--routes-poll-seconds", "0.5",
            "--port", str(self.ports["gateway_grpc"]), "--rest_api_port", str(self.ports["gateway_rest"]),
            "--log-url", self.registry_url, "--model_repository", str(self.repository), "--require-feedback-token",
            "--capture-url", self.capture_url])
        self.gateway_rest = f"http://127.0.0.1:{self.ports['gateway_rest']}"
        for arm, child in servers.items():
            self.supervisor.wait_ready(child, f"{self.target[arm]['rest']}/readyz")
            self.say(f"  ingot serve ({arm}, {self.o.model}:{champion if arm == 'champion' else challenger}): "
                     f"REST {self.target[arm]['rest']}  gRPC {self.target[arm]['grpc']}")
        self.supervisor.wait_ready(gateway, f"{self.gateway_rest}/readyz")
        self.say(f"  ingot gateway: REST {self.gateway_rest}  gRPC 127.0.0.1:{self.ports['gateway_grpc']}  "
                 f"routing table {self.files['routes.yaml']}")
        self.say(f"  input capture: {self.o.capture_sample:.0%} of predicted rows stored under {self.capture_url}")
        self.say(f"  logs of the servers: {self.supervisor.log_dir}")
        self._stage("serve", started)

    def _live_images(self) -> tuple[Any, Any, list[str]]:
        """The live pool at the model's input size (carved out of the dataset, in no split); for a
        dataset that could not be carved, the held-out test split of the newest pipeline run's
        Dataset artifact (what the evaluate step judged the model on)."""
        with self.registry() as registry:
            config = registry.get_version(self.o.model, self.result.champion_before).config
        height, width = (config.get("image_size") or [32, 32])[:2]
        if self.live is not None:
            source = self.live
        else:
            root = settings.data_dir().expanduser().resolve() / "pipeline-root"
            artifacts = sorted(root.glob("ingot-retrain-*/ingest/dataset"), key=lambda p: p.stat().st_mtime)
            if not artifacts:
                raise LoopError(f"no Dataset artifact under {root}; the retrain stage writes one")
            source = artifacts[-1]
        from ingot.loop.holdout_arrays import load

        return load(source, height, width, self.workdir / "live-images.npz",
                    self.supervisor.log_dir / "live-images.log")

    def _ab_test(self) -> None:
        from ingot.loop.traffic import TrafficDriver

        started = time.perf_counter()
        self.say("")
        self.say("== 3/5 A/B test: live traffic, delayed ground truth, `ingot rollout` decides and acts")
        challenger = self.result.challenger
        assert challenger is not None
        self._start_rollout(challenger, actor="make-run")
        self.controller = self.supervisor.start("rollout-controller", [
            "rollout", "run", "--interval", "1", "--port", str(self.ports["controller"]), "--host", "127.0.0.1",
            "--registry", self.registry_url])
        self.say(f"  the controller runs in the background (judge endpoint "
                 f"http://127.0.0.1:{self.ports['controller']}/v1/rollouts/{self.o.model}/verdict)")
        images, labels, class_names = self._live_images()
        shift = PhotoShift()
        where = "live pool" if self.live is not None else "held-out test images"
        self.say(f"  traffic: {self.o.callers} callers, {self.o.batch} images a request, from the {len(images)} "
                 f"{where} with {shift.describe()}; ground truth for {self.o.label_share:.0%} of "
                 f"rows, {self.o.label_delay_s[0]:g}-{self.o.label_delay_s[1]:g} s after the answer")
        self.driver = TrafficDriver(self.gateway_rest, self.o.model, images, labels, class_names,
                                    callers=self.o.callers, batch=self.o.batch, label_share=self.o.label_share,
                                    label_delay_s=self.o.label_delay_s, shift=shift, seed=self.o.seed,
                                    feedback_token=self.feedback_token)
        stats = self._drive_to_decision(self.o.max_requests, "before drift")
        self.result.ab_requests, self.result.ab_rows = stats.requests, stats.rows
        self.result.ab_failed, self.result.ab_labelled = stats.failed, stats.labelled
        self.result.decision = self._finish_rollout(self.o.max_requests)
        self.result.decision_labels = self._labels_at_decision()
        self.ingot(["models", "show", f"{self.o.model}:{challenger}", "--registry", self.registry_url])
        champion = self._champion()
        self.result.champion_after = champion.version if champion else None
        self._stage("A/B test and decision", started)

    def _drift(self) -> None:
        started = time.perf_counter()
        self.say("")
        self.say("== 4/5 Drift: the traffic changes; the monitor notices, the labelled captured rows become a "
                 "dataset version, retraining on it heals, the healed candidate is A/B-tested")
        drift = Drift()
        self.say(f"  from now on: {drift.describe()} (the champion v{self.result.champion_after} serves everything); "
                 f"traffic paced at {self.o.drift_rate:g} requests/s while the monitor watches")
        self.driver.start_drift(drift)
        self.driver.phase = OLD_CHAMPION
        drift_started = time.monotonic()
        drift_started_at = datetime.now(UTC)  # compared with the promotion's recorded time
        report = self.workdir / "drift-report.html"
        self.result.reports["drift report"] = str(report)
        rows_at_start = self.driver.stats.rows
        earlier_trigger = self.triggered.latest()
        check = ["monitor", "check", self.o.model, "--window", str(self.o.monitor_window), "--trigger",
                 "--report", str(report), "--dataset", self.dataset, "--model-repository", str(self.repository),
                 "--production-weight", str(self.o.production_weight),
                 "--max-production-rows", str(self.o.max_production_rows), "--registry", self.registry_url]
        traffic = BackgroundTraffic(self.driver, rate=self.o.drift_rate, concurrency=self.o.concurrency)
        try:
            code = 0
            budget_rows = self.o.drift_requests * self.o.batch
            while self.driver.stats.rows - rows_at_start < budget_rows:
                target = self.driver.stats.rows + self.o.check_every * self.o.batch
                while self.driver.stats.rows < target and traffic.alive():
                    time.sleep(0.2)
                if not traffic.alive():
                    raise LoopError("the traffic driver stopped during the drift stage")
                rows_at_check = self.driver.stats.rows  # the window the check reads ends about here
                code = self.ingot(check, ok=(0, 3))
                if code == 3:
                    break
            if code != 3:
                self.say(f"  no drift flagged within {self.o.drift_requests} requests")
                self._stage("drift", started)
                return
            self.result.drift_rows_to_trigger = rows_at_check - rows_at_start
            self.say(f"  drift flagged by the check that started {self.result.drift_rows_to_trigger} rows after it "
                     f"began ({time.monotonic() - drift_started:.0f} s after it began, the check included)")
            latest = self.triggered.latest()
            if latest is None or (earlier_trigger is not None and latest.id == earlier_trigger.id):
                self.result.trigger_state = "not started (cooldown)"
                self.say("  no retraining this time: an earlier trigger's cooldown still holds (see the check above); "
                         "`ingot monitor history` lists it")
                self.ingot(["monitor", "history", self.o.model, "--registry", self.registry_url])
                self._stage("drift", started)
                return
            traffic.rate = self.o.retrain_rate
            self.say(f"  the traffic goes on at {self.o.retrain_rate:g} requests/s while the run trains (on a cluster the "
                     "run has GPU nodes of its own; here it shares 2 cores with the servers); the labelled, captured "
                     "rows from before the trigger are its production data")
            self.say("  a second check while it trains finds the trigger recorded and starts nothing:")
            self.ingot(check, ok=(0, 3))
            self.ingot(["monitor", "history", self.o.model, "--registry", self.registry_url])
            outcome = self.triggered.wait(latest)
            self.result.trigger_state, self.result.triggered_version = outcome.state, outcome.version
            if outcome.log_path:
                self.result.reports["retraining run log"] = outcome.log_path
        finally:
            traffic.stop()
        self._stage("drift and retraining", started)
        self._heal(drift_started_at)

    def _heal(self, drift_started_at: datetime) -> None:
        """The triggered run's blessed candidate becomes the challenger under the model's policy
        (`auto: true`): the rollout controller running in the background starts its rollout (the one
        implementation of `auto`, as in a cluster); the loop waits for it, then drives the drifted
        stream to the decision; after a promotion the stream is measured."""
        from ingot.registry.datasets import dataset_of
        from ingot.rollout.store import RolloutStore

        version = self.result.triggered_version
        if version is None:
            return
        started = time.perf_counter()
        with self.registry() as registry:
            record = registry.get_version(self.o.model, version)
            dataset = dataset_of(registry, self.o.model, version)
        self.result.triggered_metrics = dict(record.metrics or {})
        if dataset is not None:
            production = dataset.sources.get("production") or {}
            self.result.dataset_version = dataset.id
            self.result.production_rows = {key: production.get(key) for key in (
                "labelled_inputs", "train_rows", "holdout_rows", "older_dropped")}
            self.result.production_window = production.get("window")
        # The controller may have started its rollout already (then it is the challenger).
        if record.stage is None or record.stage.value not in ("candidate", "challenger"):
            self.say(f"  version {version} is {record.stage.value if record.stage else 'not published'}: nothing to "
                     "roll out")
            return
        if not policy_auto(self.o.policy):
            self.say(f"  the policy {self.o.policy} has auto: false: version {version} waits for "
                     f"`ingot rollout start {self.o.model} --challenger {version}`")
            return
        self.say("")
        self.say(f"  policy {self.o.policy} has auto: true: the rollout controller (running in the background) "
                 f"makes the triggered run's blessed candidate v{version} the challenger without a person")
        waited_from = last = time.monotonic()
        while True:
            self.supervisor.check_alive()
            with self.registry() as registry:
                store = RolloutStore(registry)
                ours = [r for r in store.list(self.o.model) if r.challenger_version == version]
                first = store.get(ours[0].id).transitions[0] if ours else None  # newest first
            if first is not None:
                break
            waited = time.monotonic() - waited_from
            if waited > AUTO_START_TIMEOUT_S:
                raise LoopError(f"the rollout controller did not start a rollout of v{version} within "
                                f"{AUTO_START_TIMEOUT_S:.0f} s although the policy says auto: true; its log: "
                                f"{self.controller.log_path}")
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                self.say(f"  ... waiting {waited:.0f} s for the controller to start the rollout of v{version}")
            time.sleep(0.5)
        waited = time.monotonic() - waited_from
        self.say(f"  the controller started rollout #{ours[0].id} for v{version}"
                 + (f" (after {waited:.0f} s of waiting)" if waited >= 1 else "")
                 + f": {first.reason} (actor {first.actor})")
        self._drive_to_decision(self.o.heal_requests, HEALING)
        self.result.heal_decision = self._finish_rollout(self.o.heal_requests)
        self.result.heal_labels = self._labels_at_decision()
        champion = self._champion()
        self.result.champion_final = champion.version if champion else None
        if self.result.heal_decision == "promoted":
            # Serving from the moment the controller recorded `promoted` (after the champion's
            # server loaded the version), not from when this loop got round to asking.
            with self.registry() as registry:
                store = RolloutStore(registry)
                promoted_at = store.get(store.latest(self.o.model).id).transitions[-1].at
            self.result.healed_after_s = (promoted_at - drift_started_at).total_seconds()
            self.say(f"  healed champion v{version} serving {self.result.healed_after_s:.0f} s after the drift began "
                     f"(promoted at {promoted_at:%H:%M:%S} UTC); {self.o.after_requests} more requests on the "
                     "drifted stream:")
            self.driver.phase = HEALED
            asyncio.run(self.driver.run(stop=lambda: False, max_requests=self.o.after_requests,
                                        concurrency=self.o.concurrency))
        self.result.live_accuracy = {phase: self.driver.stats.accuracy(phase) for phase in
                                     ("before drift", OLD_CHAMPION, HEALING, HEALED)}
        self.result.live_accuracy_drifted = {phase: self.driver.stats.accuracy(phase, drifted=True) for phase in
                                             ("before drift", OLD_CHAMPION, HEALING, HEALED)}
        self._stage("healing A/B and after", started)


def _raise_interrupt(*_args: Any) -> None:
    raise KeyboardInterrupt
