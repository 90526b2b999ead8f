"""Start ingot-retrain for a claimed drift trigger, and find out how earlier ones ended: the
launchers the CLI hands the monitor (`ingot.monitor.launch.Launcher`).

- locally: a background process (`python -m pipelines.local_run`) runs the pipeline with kfp's
  local runner through `run_request_locally`, the function `ingot pipeline run` calls, logs to a
  file and records the outcome itself;
- on a cluster: `kfp.Client` with the compiled pipeline (`pipelines.submit`), the same code as
  `ingot pipeline run --host`; the run's state is read back from the KFP API. The production
  policy travels as the pipeline's `production` parameter and its build-data step builds the
  dataset version.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingot import settings, storage
from ingot.errors import IngotError
from ingot.monitor.triggers import FAILED, KFP, LOCAL, RUNNING, Trigger, TriggerStore, process_alive, this_host
from pipelines.request import PipelineRequest, local_registry_url

if TYPE_CHECKING:
    from ingot.monitor.check import CheckSettings
    from ingot.monitor.launch import Recipe
    from ingot.retrain.production import ProductionData

LOCAL_RETRY_BACKOFF = "2s"  # a local train retry has no node pool to wait for


def run_request_locally(
    request: PipelineRequest, *, pipeline_root: Path | None = None, image: str | None = None,
    cache: bool = False, progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ingot-retrain on this machine (kfp's SubprocessRunner) and read its outcome back from
    the registry: the report `ingot pipeline run` prints. Raises IngotError on a failed run."""
    from pipelines.local import run_locally
    from pipelines.retrain import build_pipeline

    request = request.for_local_run()
    os.environ.setdefault(settings.TF_LOG_LEVEL_ENV, settings.DEFAULT_TF_LOG_LEVEL)  # the steps inherit it
    root = (pipeline_root or settings.data_dir() / "pipeline-root").expanduser().resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    log_path = root / "logs" / f"ingot-retrain-{stamp}.log"
    if progress:
        progress(f"running ingot-retrain locally for {request.model_name!r} (step logs: {log_path})")
    pipeline = build_pipeline(image, train_retry_backoff=LOCAL_RETRY_BACKOFF)
    # The registry URL (a password) reaches the steps through their environment, never their
    # arguments: kfp's local runner puts the parameters on each step's command line.
    parameters, environment = request.without_secrets()
    with _environment(environment):
        result = run_locally(pipeline, parameters.arguments(), pipeline_root=root, log_path=log_path,
                             progress=progress, enable_caching=cache)
    record = result.output if isinstance(result.output, dict) else None
    if record is None or "id" not in record:
        raise IngotError(f"the pipeline finished without a registry record (output {result.output!r}); see {log_path}")
    assert request.registry_url is not None  # for_local_run resolved it
    return local_report(record, request.registry_url, result)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the steps this process starts, restoring them after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def local_report(record: dict[str, Any], registry_url: str, result: Any) -> dict[str, Any]:
    """What a local run ends with, read back from the registry: the gate's decision, per-class
    metrics, the published version and the registry entry with its stage history."""
    from sqlalchemy.engine import make_url

    from ingot.retrain.registry import open_registry

    with open_registry(registry_url) as registry:
        entry = registry.get_record(int(record["id"]))
        events = registry.record_events(entry.id)
        champion = registry.champion(entry.name)
    return {
        "registry_url": make_url(registry_url).render_as_string(hide_password=True),
        "record": entry.to_dict(),
        "events": [event.to_dict() for event in events],
        "champion": champion.version if champion is not None else None,
        "published_created": record.get("published_created"),
        "steps": [{"name": s.name, "status": s.status, "seconds": round(s.seconds or 0.0, 2)} for s in result.steps],
        "cached_steps": result.cached,
        "seconds": round(result.seconds, 2),
        "run_dir": str(result.run_dir) if result.run_dir else None,
        "log": str(result.log_path),
    }


def start_local(
    store: TriggerStore, trigger: Trigger, recipe: Recipe, *, db_url: str, dataset_uri: str,
    registry_url: str, model_repository: str, work_dir: Path, production: ProductionData | None = None,
) -> Trigger:
    """Start the run in a background process; record its run id (local-<trigger>-<time>), log and pid.
    With `production`, the runner first builds base + labelled production rows into a dataset
    version and trains on it (ingot.retrain.production)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"local-{trigger.id}-{stamp}"
    run_dir = Path(work_dir).expanduser().resolve() / run_id
    try:
        # The database URLs (passwords) go to the runner in its environment, never in its arguments
        # or the request file: the runner's steps read $INGOT_REGISTRY_URL.
        request = PipelineRequest.from_recipe(recipe.training_config, recipe.gate, model_name=trigger.model,
                                              dataset_uri=dataset_uri, model_repository=model_repository)
        run_dir.mkdir(parents=True, exist_ok=True)
        request_path = run_dir / "request.json"
        storage.atomic_write(request_path, request.to_json())
        extra = []
        if production is not None:
            storage.atomic_write(run_dir / "production.json", production.to_json())
            extra = [str(run_dir / "production.json")]
        log_path = run_dir / "run.log"
        environment = dict(os.environ, **{settings.MONITOR_DB_URL_ENV: db_url,
                                          settings.REGISTRY_URL_ENV: local_registry_url(registry_url),
                                          settings.TF_LOG_LEVEL_ENV: settings.DEFAULT_TF_LOG_LEVEL})
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipelines.local_run", str(trigger.id), str(request_path),
                 str(run_dir / "pipeline-root"), *extra],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=environment,
                start_new_session=True,  # outlives the monitor (a CronJob's check, a Ctrl-C)
            )
    except (OSError, IngotError) as err:
        store.finish(trigger.id, FAILED, f"could not start the local run: {err}")
        raise IngotError(f"could not start the local retraining run: {err}") from err
    return store.mark_running(trigger.id, run_id=run_id, log_path=str(log_path), pid=process.pid, host=this_host())


def start_kfp(
    store: TriggerStore, trigger: Trigger, recipe: Recipe, *, host: str, dataset_uri: str,
    model_repository: str | None = None, registry_url: str | None = None, experiment: str | None = None,
    namespace: str | None = None, service_account: str | None = None, image: str | None = None,
    production: ProductionData | None = None, now: datetime | None = None,
) -> Trigger:
    """Submit the compiled pipeline through kfp.Client; a refused submission fails the trigger.
    With `production`, the run's build-data step trains it on base + labelled production rows:
    the policy goes as the `production` parameter with the window ending now (the trigger's
    time), and without the log URL, which the step reads from the registry Secret."""
    import dataclasses

    from pipelines.submit import submit_pipeline

    try:
        policy = None
        if production is not None:
            end = production.window_end(now or datetime.now(UTC))
            policy = dataclasses.replace(production, until=end.isoformat()).to_parameter()
        request = PipelineRequest.from_recipe(recipe.training_config, recipe.gate, model_name=trigger.model,
                                              dataset_uri=dataset_uri or "", model_repository=model_repository or None,
                                              registry_url=registry_url or None, production=policy)
        submitted = submit_pipeline(host, request, image=image, experiment=experiment, namespace=namespace,
                                    service_account=service_account,
                                    run_name=f"ingot-retrain {trigger.model} drift trigger #{trigger.id}")
    except IngotError as err:
        store.finish(trigger.id, FAILED, str(err))
        raise
    return store.mark_running(trigger.id, run_id=submitted.run_id, log_path=submitted.url, host=submitted.host)


def refresh(store: TriggerStore, trigger: Trigger, *, namespace: str | None = None) -> Trigger:
    """Bring an in-flight trigger's state up to date: a local run whose process is gone without
    recording an outcome failed; a KFP run in a final state finished. Unreachable KFP: unchanged."""
    if trigger.state != RUNNING:
        return trigger
    if trigger.backend == LOCAL and trigger.pid and trigger.host == this_host():
        _reap(trigger.pid)
        if not process_alive(trigger.pid):
            current = store.get(trigger.id)  # the runner may have recorded its outcome meanwhile
            if current.state == RUNNING:
                return store.finish(trigger.id, FAILED, f"the local run's process {trigger.pid} exited "
                                    f"without recording an outcome; see {trigger.log_path}")
            return current
    if trigger.backend == KFP and trigger.run_id and trigger.host:
        from pipelines.submit import FINISHED_STATES, run_state

        try:
            state = run_state(trigger.host, trigger.run_id, namespace)
        except IngotError:
            return trigger
        if state in FINISHED_STATES:
            return store.finish(trigger.id, FINISHED_STATES[state], f"KFP run state {state}")
    return trigger


def _reap(pid: int) -> None:
    """Collect our own finished child, if it is one, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@dataclass(frozen=True)
class LocalLauncher:
    """Triggered runs on this machine, writing to the given registry and model repository."""

    registry_url: str
    model_repository: str
    work_dir: Path
    dataset_uri: str = ""
    production: ProductionData | None = None  # train on base + labelled production rows
    backend: str = LOCAL

    def start(self, store: TriggerStore, trigger: Trigger, recipe: Recipe) -> Trigger:
        return start_local(store, trigger, recipe, db_url=self.registry_url, dataset_uri=self.dataset_uri,
                           registry_url=self.registry_url, model_repository=self.model_repository,
                           work_dir=self.work_dir, production=self.production)

    def refresh(self, store: TriggerStore, trigger: Trigger) -> Trigger:
        return refresh(store, trigger)


@dataclass(frozen=True)
class KfpLauncher:
    """Triggered runs submitted to a Kubeflow Pipelines endpoint."""

    host: str
    dataset_uri: str = ""
    model_repository: str | None = None
    experiment: str | None = None
    namespace: str | None = None
    service_account: str | None = None
    image: str | None = None
    production: ProductionData | None = None  # train on base + labelled production rows (build-data step)
    backend: str = KFP

    def start(self, store: TriggerStore, trigger: Trigger, recipe: Recipe) -> Trigger:
        return start_kfp(store, trigger, recipe, host=self.host, dataset_uri=self.dataset_uri,
                         model_repository=self.model_repository, registry_url=None, experiment=self.experiment,
                         namespace=self.namespace, service_account=self.service_account, image=self.image,
                         production=self.production)

    def refresh(self, store: TriggerStore, trigger: Trigger) -> Trigger:
        return refresh(store, trigger, namespace=self.namespace)


def launcher_for(check: CheckSettings) -> LocalLauncher | KfpLauncher:
    """The launcher a check's settings ask for: KFP when a host is set, else this machine."""
    if check.kfp_host:
        return KfpLauncher(host=check.kfp_host, dataset_uri=check.dataset_uri, model_repository=check.model_repository,
                           experiment=check.kfp_experiment, namespace=check.kfp_namespace,
                           service_account=check.kfp_service_account, image=check.image,
                           production=check.production)
    return LocalLauncher(
        registry_url=local_registry_url(check.registry_url), dataset_uri=check.dataset_uri,
        model_repository=check.model_repository or settings.model_repository(),
        work_dir=check.work_dir or settings.data_dir() / "monitor" / check.model, production=check.production)


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)
