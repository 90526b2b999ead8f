"""`ingot loop` (what `make run` runs) end to end at small scale: a tiny recipe, a few hundred
requests, a policy that decides quickly. Real processes throughout: kfp's local runner, two
`ingot serve`, `ingot gateway` capturing inputs, the rollout controller, `ingot monitor check
--trigger` and the retraining run it starts on base + labelled production rows, whose candidate is
rolled out on its own (policy `auto: true`) and heals the drifted stream."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ingot.registry import Registry

# Four pipeline runs (champion, challenger, the healing retraining and its dataset build) plus two
# A/B tests: past the suite's default per-test limit on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("loop-end-to-end"), pytest.mark.timeout(1800)]

QUICK_POLICY = """\
alpha: 0.05
tau: 0.1
min_labels: 40
margin: 0.25
min_step_requests: 20
latency_ratio: 10
max_labels: 3000
auto: true
"""
# Recovery, stated: on the drifted rows the healed champion answers at least this much more
# accurately than the old champion did (tiny recipe: 3 epochs at 20x20; make run's figures are in
# README and docs/capture.md).
RECOVERY_MARGIN = 0.10


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
        "--set", "epochs=3", "--set", "image_size=[20, 20]", "--set", "early_stopping_patience=2",
        "--min-accuracy", "0", "--min-class-f1", "0", "--max-regression", "1",
        "--max-requests", "1500", "--drift-requests", "400", "--monitor-window", "200", "--callers", "50",
        "--max-production-rows", "600", "--heal-requests", "2000", "--after-requests", "60",
    ]
    done = subprocess.run(command, env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, timeout=1800, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    # Every stage ran and said so.
    for heading in ("== 1/5 Retrain", "== 2/5 Serve", "== 3/5 A/B test", "== 4/5 Drift", "== 5/5 Summary"):
        assert heading in output, output[-3000:]
    assert "challenger recipe configs/digits-cnn-challenger.yaml, because:" in output
    assert "live pool: 400 images carved out of the dataset" in output

    with Registry.from_url(f"sqlite:///{data_dir / 'registry.db'}") as registry:
        from ingot.monitor.triggers import TriggerStore
        from ingot.rollout.store import RolloutStore

        store = RolloutStore(registry)
        rollouts = store.list("digits")  # newest first: the healing rollout, then the first A/B
        assert len(rollouts) == 2, [(r.id, r.state) for r in rollouts]
        rollout = store.get(rollouts[1].id)
        assert rollout.state in ("promoted", "rolled_back"), rollout.state
        decision = rollout.transitions[-1]
        assert decision.evidence, "the decision is written with the figures behind it"
        events = [(e.from_stage, e.to_stage) for e in registry.events("digits", 2)]
        assert ("candidate", "challenger") in events
        if rollout.state == "promoted":
            assert ("challenger", "champion") in events
            assert registry.events("digits", 1)[-1].to_stage == "archived"
            old_champion = 2
        else:
            assert ("challenger", "rejected") in events
            old_champion = 1
        triggers = TriggerStore(registry.engine).history("digits")
        assert len(triggers) == 1, "drift starts exactly one retraining run; the cooldown holds the second check"
        assert triggers[0].state == "succeeded", triggers[0].detail
        assert "drift in" in triggers[0].reason
        assert "base + the newest 600 labelled production rows x3" in triggers[0].statistics["training_data"]

        # No human: the triggered run's candidate v3 was rolled out on its own, and it healed.
        healing = store.get(rollouts[0].id)
        assert (healing.champion_version, healing.challenger_version) == (old_champion, 3)
        # The rollout controller started it (the one implementation of `auto`), naming why.
        assert healing.transitions[0].actor == healing.created_by == "ingot-rollout (policy auto)"
        for words in ("policy auto: true", f"drift trigger #{triggers[0].id}", f"run {triggers[0].run_id}, which "
                      "succeeded", "the gate blessed digits:3"):
            assert words in healing.transitions[0].reason, healing.transitions[0].reason
        assert triggers[0].version == 3 and triggers[0].pipeline_run_id == registry.get_version("digits", 3).pipeline_run_id
        stage_event = [e for e in registry.events("digits", 3) if e.to_stage == "challenger"][0]
        assert stage_event.actor == "ingot-rollout (policy auto)" and "policy auto: true" in stage_event.reason
        assert healing.state == "promoted", [(t.to_state, t.reason) for t in healing.transitions]
        assert registry.champion("digits").version == 3

        # Lineage: champion -> dataset version -> production window, with the holdout scores.
        from ingot.registry.datasets import dataset_of

        dataset = dataset_of(registry, "digits", 3)
        assert dataset is not None, "the healed champion names the dataset version it trained on"
        production = dataset.sources["production"]
        assert production["model"] == "digits" and production["window"]["until"]
        assert production["train_rows"] + production["holdout_rows"] == 600
        assert dataset.sources["policy"]["production_weight"] == 3
        assert dataset.window_end is not None and dataset.window_end >= triggers[0].created_at
        holdout = registry.get_version("digits", 3).metrics["production_holdout"]
        assert holdout["rows"] == production["holdout_rows"] and holdout["champion"]["version"] == old_champion
        assert holdout["candidate"]["accuracy"] > holdout["champion"]["accuracy"]

    assert f"the controller started rollout #{rollouts[0].id} for v3" in output

    summary = output[output.index("== 5/5 Summary"):]
    assert " 0 failed" in summary, summary
    healing = re.search(r"healing A/B: v3 vs champion v\d+: promoted \(labelled rows at the decision: "
                        r"champion (\d+), challenger (\d+)\); champion now v3", summary)
    assert healing, summary
    # The healing decision's own labels, not the first A/B's.
    first = re.search(r"A/B: champion v\d+ vs challenger v\d+: \w+ \(labelled rows at the decision: champion (\d+), "
                      r"challenger (\d+)\)", summary)
    assert first and first.groups() != healing.groups(), summary
    assert "drift start -> healed champion serving:" in summary
    live = _live_accuracy(summary)
    assert set(live) == {"before drift", "drift, old champion", "drift, healing A/B", "drift, healed champion"}
    old, healed = live["drift, old champion"], live["drift, healed champion"]
    assert healed[1] >= RECOVERY_MARGIN + old[1], f"drifted rows: old champion {old}, healed {healed}\n{summary}"
    assert "rollout report:" in summary and "drift report:" in summary
    assert (workdir / "rollout-report.html").stat().st_size > 0
    assert (workdir / "drift-report.html").stat().st_size > 0
    assert _processes_mentioning(str(tmp_path)) == [], "the loop left processes running"


def _live_accuracy(summary: str) -> dict[str, tuple[float, float]]:
    """{phase: (accuracy on all rows, on drifted rows)} from the summary's live accuracy table."""
    import re

    found = {}
    for line in summary.splitlines():
        match = re.match(r"^\s{4}(.+?)\s{2,}([0-9.]+) \(\d+ rows\)\s*\| ([0-9.]+|n/a)", line)
        if match:
            found[match.group(1).strip()] = (float(match.group(2)),
                                             float(match.group(3)) if match.group(3) != "n/a" else 0.0)
    return found
