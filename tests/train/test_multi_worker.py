"""Multi-worker training on loopback: `ingot train --workers 2` runs two worker processes under
MultiWorkerMirroredStrategy and publishes one model; a worker killed mid-training makes the group
restart, and BackupAndRestore resumes it from the last finished epoch."""

from __future__ import annotations

import json
import re
import signal
import threading
import time

import pytest

from ingot.cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multi-worker")]

FAST = ["--set", "image_size=[20,20]", "--set", "batch_size=64", "--set", "learning_rate=0.003",
        "--set", "augmentation.rotation=0", "--set", "augmentation.zoom=0", "--set", "verbose=lines"]


def test_two_local_workers_train_one_model_above_090(tmp_path, capsys):
    repository = tmp_path / "repository"
    code = main(["train", "--config", "configs/digits-cnn.yaml", *FAST, "--set", "epochs=10",
                 "--set", "early_stopping_patience=3", "--workers", "2", "--model-name", "digits",
                 "--model-repository", str(repository), "--work-dir", str(tmp_path / "run"),
                 "--registry", f"sqlite:///{tmp_path / 'registry.db'}", "--require-blessing"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 workers finished" in out
    assert [p.name for p in (repository / "digits").iterdir() if p.name.isdigit()] == ["1"]  # one model
    card = json.loads((repository / "digits" / "1" / "assets.extra" / "model_card.json").read_text())
    assert card["metrics"]["accuracy"] >= 0.90
    assert card["training_config"]["workers"] == 2 and card["training_config"]["distribution"] == "multi_worker"
    assert card["training"]["hardware"]["strategy"] == "CollectiveAllReduceStrategy"
    # Both workers trained in step (the same logged metrics), and only the chief wrote the model.
    logs = sorted((tmp_path / "run" / "workers" / "attempt-1").glob("worker-*.log"))
    epochs = [[line for line in log.read_text().splitlines() if line.startswith("epoch ")] for log in logs]
    assert len(epochs) == 2 and epochs[0] and [e.split(" - ")[:3] for e in epochs[0]] == [
        e.split(" - ")[:3] for e in epochs[1]]
    assert sorted(p.name for p in (tmp_path / "run" / "model").iterdir()) == ["model.keras", "training.json"]


def test_a_killed_worker_restarts_the_group_from_its_backup(tmp_path):
    from ingot.retrain.config import resolve_config
    from ingot.retrain.steps import ingest
    from ingot.train.distributed import run_local_workers

    config = resolve_config({"architecture": "cnn", "image_size": [20, 20], "epochs": 4, "batch_size": 64,
                             "early_stopping_patience": 10, "validation_fraction": 0.15, "test_fraction": 0.15,
                             "verbose": "lines", "distribution": "multi_worker", "workers": 2,
                             "augmentation": {"flip": "none", "rotation": 0.0, "zoom": 0.0}})
    ingest("bundled:digits", tmp_path / "dataset", config)
    killed: dict[str, int] = {}

    def kill_worker_1_after_epoch_2(attempt) -> None:
        if attempt.number != 1:
            return

        def watch() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and attempt.processes[1].poll() is None:
                if "epoch 2/4" in attempt.logs[1].read_text(errors="replace"):
                    attempt.processes[1].send_signal(signal.SIGKILL)
                    killed["pid"] = attempt.processes[1].pid
                    return
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()

    result = run_local_workers(tmp_path / "dataset", config, tmp_path / "model", work_dir=tmp_path / "work",
                               on_attempt=kill_worker_1_after_epoch_2, poll_s=0.1)
    assert killed, "worker 1 finished before it could be killed"
    first, second = result.attempts
    assert first["exit_codes"][1] == -signal.SIGKILL and second["exit_codes"] == [0, 0]
    for log in sorted((tmp_path / "work" / "workers" / "attempt-2").glob("worker-*.log")):
        epochs = [int(m) for m in re.findall(r"^epoch (\d+)/4", log.read_text(), flags=re.MULTILINE)]
        assert epochs and epochs[0] == 3 and epochs[-1] == 4, (log.name, epochs)  # resumed after epoch 2
    assert (tmp_path / "model" / "model.keras").is_file()
    summary = json.loads((tmp_path / "model" / "training.json").read_text())
    assert summary["epochs_run"] == 2  # the resumed run trained epochs 3 and 4


def test_a_worker_that_fails_for_good_is_named_with_its_log(tmp_path):
    from ingot.retrain.config import resolve_config
    from ingot.train.distributed import WorkerError, run_local_workers

    config = resolve_config({"distribution": "multi_worker", "workers": 2})
    with pytest.raises(WorkerError, match=r"worker \d exited with status 2 \(attempt 1\); log .*worker-\d\.log: "
                                          r"error: .*no dataset\.json; expected a Dataset artifact"):
        run_local_workers(tmp_path / "no-dataset", config, tmp_path / "model", work_dir=tmp_path / "work", poll_s=0.1)
    assert not (tmp_path / "work" / "workers" / "attempt-2").exists()  # not retryable: no restart
    with pytest.raises(WorkerError, match="needs at least 2 workers"):
        run_local_workers(tmp_path, resolve_config({}), tmp_path / "model", work_dir=tmp_path / "work")
