"""Start `ingot-retrain` for a claimed trigger, and find out how earlier ones ended.

The run retrains with the champion's own recipe (its model card's `training_config`) and gate
thresholds, on the configured dataset URI:
- locally: `ingot pipeline run` (kfp's local runner) in a background process
  (`python -m ingot.monitor.local_run`) that logs to a file and records the outcome itself;
- on a cluster: `kfp.Client` with the compiled pipeline (`ingot.pipeline_submit`), the same code
  as `ingot pipeline run --host`; the run's state is read back from the KFP API.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingot.errors import ConfigError, IngotError
from ingot.monitor.triggers import (
    FAILED,
    KFP,
    LOCAL,
    RUNNING,
    Trigger,
    TriggerStore,
    process_alive,
    this_host,
)

DB_URL_ENV = "INGOT_MONITOR_DB_URL"  # how the background runner finds the trigger table (not argv: passwords)


@dataclass(frozen=True)
class Recipe:
    """What a triggered run trains with: the champion's settings and gate thresholds."""

    training_config: dict[str, Any]
    gate: dict[str, Any]

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> Recipe:
        config = card.get("training_config")
        if not isinstance(config, Mapping):
            raise ConfigError("the champion's model card has no 'training_config': cannot retrain with its recipe")
        thresholds = dict(((card.get("gate") or {}).get("thresholds")) or {})
        return cls(dict(config), {key: thresholds[key] for key in ("min_accuracy", "min_class_f1", "max_regression")
                                  if thresholds.get(key) is not None})

    def config_parameter(self) -> dict[str, Any]:
        """The recipe as the pipeline's `recipe` parameter (validated by TrainConfig)."""
        from ingot.retrain import config_parameter
        from ingot.train import TrainConfig

        return config_parameter(TrainConfig.from_dict(self.training_config))


def local_command(recipe: Recipe, *, model: str, dataset_uri: str, recipe_path: Path, registry_url: str,
                  model_repository: str, pipeline_root: Path) -> list[str]:
    """`ingot pipeline run` arguments of a local triggered run (the recipe is written to `recipe_path`)."""
    import yaml

    recipe_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = recipe_path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(recipe.config_parameter(), sort_keys=True), encoding="utf-8")
    temporary.replace(recipe_path)
    argv = ["pipeline", "run", "--config", str(recipe_path), "--model-name", model,
            "--registry", registry_url, "--model-repository", model_repository,
            "--pipeline-root", str(pipeline_root), "--json"]
    if dataset_uri:
        argv += ["--dataset", dataset_uri]
    for key, value in recipe.gate.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def start_local(
    store: TriggerStore, trigger: Trigger, recipe: Recipe, *, db_url: str, dataset_uri: str,
    registry_url: str, model_repository: str, work_dir: Path,
) -> Trigger:
    """Start the run in a background process; record its run id (local-<trigger>-<time>), log and pid."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"local-{trigger.id}-{stamp}"
    run_dir = Path(work_dir).expanduser().resolve() / run_id
    try:
        argv = local_command(recipe, model=trigger.model, dataset_uri=dataset_uri, recipe_path=run_dir / "recipe.yaml",
                             registry_url=registry_url, model_repository=model_repository,
                             pipeline_root=run_dir / "pipeline-root")
        log_path = run_dir / "run.log"
        environment = dict(os.environ, **{DB_URL_ENV: db_url, "TF_CPP_MIN_LOG_LEVEL": "2"})
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "ingot.monitor.local_run", str(trigger.id), *argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=environment,
                start_new_session=True,  # outlives the monitor (a CronJob's check, a Ctrl-C)
            )
    except (OSError, IngotError) as err:
        store.finish(trigger.id, FAILED, f"could not start the local run: {err}")
        raise IngotError(f"could not start the local retraining run: {err}") from err
    return store.mark_running(trigger.id, run_id=run_id, log_path=str(log_path), pid=process.pid, host=this_host())


def kfp_arguments(recipe: Recipe, *, model: str, dataset_uri: str, model_repository: str | None,
                  registry_url: str | None) -> dict[str, Any]:
    """The pipeline parameters of a cluster run, as `ingot pipeline run --host` passes them."""
    from ingot.evaluate import GateThresholds

    gate = GateThresholds.from_dict(recipe.gate)
    arguments: dict[str, Any] = {
        "dataset_uri": dataset_uri or "", "model_name": model, "recipe": recipe.config_parameter(),
        "min_accuracy": gate.min_accuracy, "min_class_f1": gate.min_class_f1, "max_regression": gate.max_regression,
    }
    arguments = {key: value for key, value in arguments.items() if value is not None}
    if model_repository:
        arguments["model_repository"] = model_repository
    if registry_url:
        arguments["registry_url"] = registry_url
    return arguments


def start_kfp(
    store: TriggerStore, trigger: Trigger, recipe: Recipe, *, host: str, dataset_uri: str,
    model_repository: str | None = None, registry_url: str | None = None, experiment: str | None = None,
    namespace: str | None = None, service_account: str | None = None, image: str | None = None,
) -> Trigger:
    """Submit the compiled pipeline through kfp.Client; a refused submission fails the trigger."""
    from ingot.pipeline_submit import submit_pipeline

    try:
        arguments = kfp_arguments(recipe, model=trigger.model, dataset_uri=dataset_uri,
                                  model_repository=model_repository, registry_url=registry_url)
        submitted = submit_pipeline(host, arguments, image=image, experiment=experiment, namespace=namespace,
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
        from ingot.pipeline_submit import FINISHED_STATES, run_state

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

