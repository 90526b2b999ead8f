"""Multi-worker training on TensorFlow's own engine: MultiWorkerMirroredStrategy over processes
described by TF_CONFIG, with BackupAndRestore so restarted workers resume from the last epoch.

The same worker entry point (`python -m ingot.train.distributed ...`) runs as a TFJob's pods
(the Kubeflow Training Operator sets TF_CONFIG) and as local processes on loopback ports
(`run_local_workers`, behind `ingot train --workers N`). Worker 0 is the chief: it writes the
Model artifact; the others write theirs to a temporary directory and drop it, as TensorFlow's
multi-worker guide prescribes (every worker must run the same save, which reads mirrored
variables).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingot import settings
from ingot.errors import IngotError

# Exit statuses a restart can cure (killed, interrupted, preempted): the Training Operator's
# `restartPolicy: ExitCode` restarts on these, and so does the local launcher.
RETRYABLE_EXIT_CODES = frozenset({130, 137, 143, -9, -15})


class WorkerError(IngotError):
    """Multi-worker training failed; the message names the worker and its log."""


def tf_config(addresses: list[str], index: int) -> dict[str, Any]:
    return {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": int(index)}}


def task_index() -> int:
    """This process's worker index from TF_CONFIG (0, the chief, when unset)."""
    raw = os.environ.get(settings.TF_CONFIG_ENV, "").strip()
    if not raw:
        return 0
    try:
        task = json.loads(raw).get("task", {})
    except ValueError as err:
        raise WorkerError(f"TF_CONFIG is not valid JSON: {err}") from err
    return int(task.get("index", 0)) if task.get("type", "worker") in ("worker", "chief") else -1


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free right now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            handle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            handle.bind(("127.0.0.1", 0))
            sockets.append(handle)
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def run_worker(dataset: str, config: Any, model_dir: str) -> dict[str, Any]:
    """One worker's whole life: the strategy first (before any other TensorFlow work), then the
    Dataset artifact, then training; the chief writes the Model artifact to `model_dir`."""
    from ingot.train.trainer import make_strategy

    strategy = make_strategy(config)
    from ingot.data.records import open_dataset_artifact
    from ingot.train.artifact import fit_and_save

    index = task_index()
    artifact = open_dataset_artifact(dataset)
    if index == 0:
        trained = fit_and_save(artifact, config, model_dir, strategy=strategy)
        return trained.summary
    scratch = tempfile.mkdtemp(prefix=f"ingot-worker-{index}-")
    try:
        return fit_and_save(artifact, config, scratch, strategy=strategy).summary
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def worker_backup_dir(base: str, index: int) -> str:
    """Each worker backs up into its own folder (the weights are identical, the files are not
    shared), so restarted workers never race on one file."""
    return os.path.join(base, f"worker-{index}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process (a TFJob pod's command, or a local worker)."""
    parser = argparse.ArgumentParser(prog="python -m ingot.train.distributed", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="the Dataset artifact (local path, gs://, s3://)")
    parser.add_argument("--model-dir", required=True, help="where the chief writes the Model artifact")
    parser.add_argument("--config-json", required=True, help="the TrainConfig as JSON")
    parser.add_argument("--backup-dir", default="", help="BackupAndRestore base (one folder per worker)")
    args = parser.parse_args(argv)
    from ingot.train.config import TrainConfig

    values = json.loads(args.config_json)
    if args.backup_dir:
        values["backup_dir"] = worker_backup_dir(args.backup_dir, max(task_index(), 0))
    config = TrainConfig.from_dict({**values, "distribution": "multi_worker"})
    try:
        summary = run_worker(args.dataset, config, args.model_dir)
    except IngotError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    print(f"worker {task_index()} done: best epoch {summary['best_epoch']}/{summary['epochs_run']}", flush=True)
    return 0


@dataclass
class LocalTraining:
    """What `run_local_workers` did: one entry per attempt (exit codes, logs)."""

    model_dir: Path
    attempts: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Attempt:
    number: int
    processes: list[subprocess.Popen]
    logs: list[Path]


def run_local_workers(
    dataset_dir: str | os.PathLike[str],
    config: Any,
    model_dir: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str],
    max_restarts: int = 2,
    poll_s: float = 0.5,
    on_attempt: Callable[[_Attempt], None] | None = None,
) -> LocalTraining:
    """Train with `config.workers` local processes on loopback ports and one exported model.

    Like the Training Operator, a worker lost with a retryable status (killed, preempted) stops
    the whole group and restarts it, up to `max_restarts` times; BackupAndRestore (one folder per
    worker under `work_dir/backup`) makes the restarted group resume from the last finished
    epoch. Any other failure raises WorkerError naming the worker and its log."""
    workers = int(config.workers)
    if workers < 2:
        raise WorkerError(f"workers={workers}: local multi-worker training needs at least 2 workers")
    work = Path(work_dir)
    backup = work / "backup"
    values = {**config.to_dict(), "distribution": "multi_worker", "backup_dir": None}
    values = {key: value for key, value in values.items() if value is not None}
    started = time.perf_counter()
    result = LocalTraining(model_dir=Path(model_dir))
    for number in range(1, max_restarts + 2):
        ports = free_ports(workers)
        addresses = [f"127.0.0.1:{port}" for port in ports]
        log_dir = work / "workers" / f"attempt-{number}"
        log_dir.mkdir(parents=True, exist_ok=True)
        processes, logs = [], []
        for index in range(workers):
            env = {**os.environ, settings.TF_CONFIG_ENV: json.dumps(tf_config(addresses, index)),
                   settings.TF_LOG_LEVEL_ENV: settings.tf_log_level()}
            log = log_dir / f"worker-{index}.log"
            command = [sys.executable, "-m", "ingot.train.distributed", "--dataset", os.fspath(dataset_dir),
                       "--model-dir", os.fspath(model_dir), "--config-json", json.dumps(values),
                       "--backup-dir", str(backup)]
            with log.open("wb") as handle:
                processes.append(subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT))
            logs.append(log)
        attempt = _Attempt(number, processes, logs)
        if on_attempt is not None:
            on_attempt(attempt)
        failed = _wait_group(processes, poll_s)
        codes = [process.returncode for process in processes]
        result.attempts.append({"attempt": number, "exit_codes": codes, "logs": [str(log) for log in logs]})
        if failed is None:
            result.seconds = round(time.perf_counter() - started, 3)
            return result
        code = codes[failed]
        if code not in RETRYABLE_EXIT_CODES or number > max_restarts:
            tail = _tail(logs[failed])
            raise WorkerError(f"worker {failed} exited with status {code} (attempt {number}); log {logs[failed]}"
                              + (f": {tail}" if tail else ""))
    raise AssertionError("unreachable")  # the loop returns or raises


def _wait_group(processes: list[subprocess.Popen], poll_s: float) -> int | None:
    """Wait for every worker; on the first failure stop the others. Returns the failed index."""
    while True:
        codes = [process.poll() for process in processes]
        failed = next((i for i, code in enumerate(codes) if code not in (None, 0)), None)
        if failed is not None:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            return failed
        if all(code == 0 for code in codes):
            return None
        time.sleep(poll_s)


def _tail(log: Path) -> str:
    """The last error-looking line of a worker log."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if "Error" in line or line.startswith("error:")]
    return (errors or lines or [""])[-1].strip()


if __name__ == "__main__":
    sys.exit(main())
