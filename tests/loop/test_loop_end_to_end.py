"""`ingot loop` (what `make run` runs) end to end at small scale: a tiny recipe, a few hundred
requests, a policy that decides quickly. Real processes throughout: kfp's local runner, two
`ingot serve`, `ingot gateway`, the rollout controller, `ingot monitor check --trigger` and the
retraining run it starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingot.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("loop-end-to-end")]

QUICK_POLICY = """\
alpha: 0.05
tau: 0.1
min_labels: 40
margin: 0.25
min_step_requests: 20
latency_ratio: 10
max_labels: 3000
"""


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def test_the_loop_retrains_serves_decides_detects_drift_and_retrains(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(QUICK_POLICY)
    data_dir, repository, workdir = tmp_path / "data", tmp_path / "models", tmp_path / "work"
    env = {**os.environ, "INGOT_DATA_DIR": str(data_dir), "DATASET_ROOT": str(tmp_path / "datasets"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("INGOT_REGISTRY_URL", None)
    env.pop("INGOT_LOG_URL", None)
    command = [
        sys.executable, "-m", "ingot.cli.main", "loop", "--model-repository", str(repository),
        "--workdir", str(workdir), "--policy", str(policy),
        "--set", "epochs=2", "--set", "image_size=[20, 20]", "--set", "early_stopping_patience=2",
        "--min-accuracy", "0", "--min-class-f1", "0", "--max-regression", "1",
        "--max-requests", "1500", "--drift-requests", "400", "--monitor-window", "200", "--callers", "50",
    ]
    done = subprocess.run(command, env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, timeout=900, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    # Every stage ran and said so.
    for heading in ("== 1/5 Retrain", "== 2/5 Serve", "== 3/5 A/B test", "== 4/5 Drift", "== 5/5 Summary"):
        assert heading in output, output[-3000:]
    assert "challenger recipe configs/digits-cnn-challenger.yaml, because:" in output

    with Registry.from_url(f"sqlite:///{data_dir / 'registry.db'}") as registry:
        from ingot.monitor.triggers import TriggerStore
        from ingot.rollout.store import RolloutStore

        store = RolloutStore(registry)
        rollout = store.get(store.latest("digits").id)
        assert rollout.state in ("promoted", "rolled_back"), rollout.state
        decision = rollout.transitions[-1]
        assert decision.evidence, "the decision is written with the figures behind it"
        events = [(e.from_stage, e.to_stage) for e in registry.events("digits", 2)]
        assert ("candidate", "challenger") in events
        if rollout.state == "promoted":
            assert registry.champion("digits").version == 2
            assert ("challenger", "champion") in events
            assert registry.events("digits", 1)[-1].to_stage == "archived"
        else:
            assert registry.champion("digits").version == 1
            assert ("challenger", "rejected") in events
        triggers = TriggerStore(registry.engine).history("digits")
        assert len(triggers) == 1, "drift starts exactly one retraining run; the cooldown holds the second check"
        assert triggers[0].state == "succeeded", triggers[0].detail
        assert "drift in" in triggers[0].reason

    summary = output[output.index("== 5/5 Summary"):]
    assert " 0 failed" in summary, summary
    assert "rollout report:" in summary and "drift report:" in summary
    assert (workdir / "rollout-report.html").stat().st_size > 0
    assert (workdir / "drift-report.html").stat().st_size > 0
    assert _processes_mentioning(str(tmp_path)) == [], "the loop left processes running"
