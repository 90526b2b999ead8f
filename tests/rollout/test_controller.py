"""The controller on SQLite and PostgreSQL: states, evidence written before actions, registry
stages, per-arm SQL counts, crash-safe resume, manual overrides and the single-actor lease."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from ingot.db import utc_now
from ingot.errors import ConfigError
from ingot.registry import Stage
from ingot.rollout.analysis import Policy
from ingot.rollout.controller import Controller
from ingot.rollout.counts import arm_counts
from ingot.rollout.store import RolloutStore
from tests.rollout.support import MODEL, TARGET, RecordingActuator, log_rows

POLICY = Policy(min_labels=200, margin=0.02)
REPO = Path(__file__).resolve().parents[2]


def controller_for(registry, actuator: RecordingActuator, **kwargs) -> Controller:
    controller = Controller(registry, actuator_factory=lambda target: actuator, **kwargs)
    actuator.store = controller.store
    return controller


def started(staged, actuator, steps=(50,), policy=POLICY, **kwargs):
    controller = controller_for(staged, actuator, **kwargs)
    rollout = controller.start(MODEL, 2, steps=list(steps), policy=policy, target=TARGET, actor="alice")
    rollout = controller.reconcile(rollout.id)
    return controller, rollout


def test_start_stages_the_challenger_and_routes_the_first_step_once_available(staged, actuator):
    controller = controller_for(staged, actuator)
    actuator.available_versions.discard(("challenger", 2))
    rollout = controller.start(MODEL, 2, steps=[10, 50], policy=POLICY, target=TARGET, actor="alice")
    assert staged.get_version(MODEL, 2).stage is Stage.CHALLENGER
    assert rollout.experiment.startswith("digits-v2-vs-v1-")
    rollout = controller.reconcile(rollout.id)
    assert rollout.state == "warming" and actuator.weight == 0
    actuator.available_versions.add(("challenger", 2))
    rollout = controller.reconcile(rollout.id)
    assert rollout.state == "analyzing" and rollout.weight == 10
    assert actuator.actions() == [("prepare", 2), ("set_weight", 10)]
    # the transition to analyzing was in the database before the weight was set
    assert ("set_weight", 10, "analyzing") in actuator.calls
    with pytest.raises(ConfigError, match="already has an unfinished rollout"):
        controller.start(MODEL, 2, steps=[10], policy=POLICY, target=TARGET)


def test_a_worse_challenger_is_rolled_back_and_rejected_with_its_figures(staged, actuator):
    controller, rollout = started(staged, actuator)
    log_rows(staged.engine, rollout.experiment, "champion", requests=2000, labelled=2000, correct=1440)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=2000, labelled=2000, correct=1340)
    log_rows(staged.engine, "some-other-experiment", "challenger", requests=500, labelled=500, correct=500)
    rollout = controller.reconcile(rollout.id)
    assert rollout.state == "rolled_back" and rollout.outcome == "rolled_back"
    assert actuator.weight == 0
    assert ("set_weight", 0, "rolling_back") in actuator.calls  # decision written before the action
    full = controller.store.get(rollout.id)
    deciding = next(t for t in full.transitions if t.to_state == "rolling_back")
    assert deciding.evidence["verdict"]["decision"] == "rollback"
    assert deciding.evidence["verdict"]["likelihood_ratio"] == pytest.approx(65.2, abs=0.1)
    assert deciding.evidence["counts"]["challenger"]["labelled"] == 2000
    assert [t.to_state for t in full.transitions] == ["pending", "warming", "analyzing", "rolling_back",
                                                      "rolled_back"]
    version = staged.get_version(MODEL, 2)
    assert version.stage is Stage.REJECTED
    event = staged.events(MODEL, 2)[-1]
    assert "1340/2000 correct" in event.reason and "below 0" in event.reason
    assert staged.champion(MODEL).version == 1


def test_a_better_challenger_is_promoted_through_the_steps(staged, actuator):
    controller, rollout = started(staged, actuator, steps=(10, 50))
    log_rows(staged.engine, rollout.experiment, "champion", requests=9000, labelled=3000, correct=2100)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=1000, labelled=100, correct=80)
    rollout = controller.reconcile(rollout.id)
    assert rollout.state == "analyzing" and rollout.step_index == 0
    assert rollout.verdict["decision"] == "continue"  # 100 challenger labels < min_labels
    # Pinned callers' rows, all labelled wrong: logged, but never evidence (they would roll it back).
    log_rows(staged.engine, rollout.experiment, "challenger", requests=400, labelled=400, correct=0,
             assignment="header")
    log_rows(staged.engine, rollout.experiment, "champion", requests=3600, labelled=1200, correct=840)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=400, labelled=400, correct=320)
    rollout = controller.reconcile(rollout.id)
    assert rollout.state == "analyzing" and rollout.step_index == 1 and rollout.weight == 50, rollout.verdict
    assert actuator.weight == 50
    # The 50% step has served nothing yet: it cannot pass on the old evidence alone.
    rollout = controller.reconcile(rollout.id)
    assert rollout.state == "analyzing" and any("50% step" in h for h in rollout.verdict["holds"])
    log_rows(staged.engine, rollout.experiment, "champion", requests=60, labelled=30, correct=21)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=60, labelled=30, correct=24)
    rollout = controller.reconcile(rollout.id)
    assert rollout.state == "promoted", rollout.verdict
    assert actuator.actions() == [("prepare", 2), ("set_weight", 10), ("set_weight", 50), ("promote", 2)]
    assert ("promote", 2, "promoting") in actuator.calls
    assert staged.champion(MODEL).version == 2
    assert staged.get_version(MODEL, 1).stage is Stage.ARCHIVED
    assert "promoted" in staged.events(MODEL, 2)[-1].reason


def test_a_controller_killed_mid_promotion_resumes_and_finishes(staged, actuator):
    controller, rollout = started(staged, actuator, steps=(50,))
    log_rows(staged.engine, rollout.experiment, "champion", requests=1000, labelled=1000, correct=600)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=1000, labelled=1000, correct=800)
    actuator.fail_promote = 1
    with pytest.raises(RuntimeError, match="killed mid-promotion"):
        controller.reconcile(rollout.id)
    assert controller.store.get(rollout.id).state == "promoting"
    assert staged.champion(MODEL).version == 1
    restarted = controller_for(staged, actuator, holder=controller.holder)
    assert restarted.reconcile(rollout.id).state == "promoted"
    assert staged.champion(MODEL).version == 2


def test_a_second_controller_does_not_act_while_the_first_holds_the_lease(staged, actuator):
    first, rollout = started(staged, actuator)
    other = RecordingActuator()
    second = controller_for(staged, other, holder="other-host:1")
    log_rows(staged.engine, rollout.experiment, "champion", requests=2000, labelled=2000, correct=1440)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=2000, labelled=2000, correct=1340)
    assert second.reconcile(rollout.id).state == "analyzing" and other.calls == []
    assert first.reconcile(rollout.id).state == "rolled_back"


def test_an_expired_lease_passes_to_another_controller(staged, actuator):
    _first, rollout = started(staged, actuator, lease_ttl_s=0.01)
    time.sleep(0.05)
    other = RecordingActuator()
    second = controller_for(staged, other, holder="other-host:1")
    log_rows(staged.engine, rollout.experiment, "champion", requests=2000, labelled=2000, correct=1440)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=2000, labelled=2000, correct=1340)
    assert second.reconcile(rollout.id).state == "rolled_back"
    assert ("set_weight", 0) in other.actions()


def test_undecided_past_the_limit_ends_inconclusive_and_the_challenger_goes_back_to_candidate(staged, actuator):
    controller, rollout = started(staged, actuator, policy=Policy(min_labels=200, max_labels=2000))
    log_rows(staged.engine, rollout.experiment, "champion", requests=2000, labelled=2000, correct=1440)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=2000, labelled=2000, correct=1400)
    rollout = controller.reconcile(rollout.id)
    assert rollout.state == "inconclusive" and actuator.weight == 0
    assert staged.get_version(MODEL, 2).stage is Stage.CANDIDATE
    assert staged.champion(MODEL).version == 1


def test_warmup_timeout_aborts(staged, actuator):
    actuator.available_versions.clear()
    controller, rollout = started(staged, actuator, warmup_timeout_s=60)
    assert rollout.state == "warming"
    controller.clock = lambda: utc_now() + timedelta(seconds=120)
    rollout = controller.reconcile(rollout.id)
    assert rollout.state == "aborted" and "did not become AVAILABLE" in controller.store.get(rollout.id).transitions[-2].reason
    assert staged.get_version(MODEL, 2).stage is Stage.CANDIDATE


def test_manual_overrides_are_recorded_with_the_actor(staged, actuator):
    controller, rollout = started(staged, actuator)
    log_rows(staged.engine, rollout.experiment, "champion", requests=50, labelled=50, correct=40)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=50, labelled=50, correct=40)
    with pytest.raises(ConfigError, match="needs --reason"):
        controller.override(MODEL, "rollback", reason=" ", actor="bob")
    done = controller.override(MODEL, "rollback", reason="customer complaint", actor="bob")
    assert done.state == "aborted" and staged.get_version(MODEL, 2).stage is Stage.REJECTED
    history = controller.store.get(done.id).transitions
    manual = next(t for t in history if t.to_state == "rolling_back")
    assert manual.actor == "bob" and manual.evidence["manual"] is True
    assert manual.evidence["counts"]["challenger"]["labelled"] == 50
    assert staged.events(MODEL, 2)[-1].actor == "bob"


def test_manual_promote(staged, actuator):
    controller, _rollout = started(staged, actuator)
    done = controller.override(MODEL, "promote", reason="validated offline", actor="carol")
    assert done.state == "promoted" and staged.champion(MODEL).version == 2
    assert staged.events(MODEL, 2)[-1].actor == "carol"


def test_counts_are_sql_aggregates_per_arm(staged):
    experiment = "digits-v2-vs-v1-abc123"
    since = utc_now()
    log_rows(staged.engine, experiment, "champion", requests=100, labelled=40, correct=30, errors=5,
             latency_ms=[float(i) for i in range(1, 101)], ts=since + timedelta(seconds=1))
    log_rows(staged.engine, experiment, "challenger", requests=20, labelled=10, correct=9, errors=1,
             ts=since - timedelta(seconds=5))
    log_rows(staged.engine, experiment, "challenger", requests=7, assignment="header", ts=since + timedelta(seconds=1))
    log_rows(staged.engine, experiment, "shadow", requests=30, labelled=0)
    log_rows(staged.engine, "another", "champion", requests=30, labelled=30, correct=30)
    counts = arm_counts(staged.engine, MODEL, experiment, step_since=since)
    champion, challenger = counts["champion"], counts["challenger"]
    assert (champion.requests, champion.errors, champion.total, champion.correct, champion.assigned) == (100, 5, 40, 30, 100)
    # Pinned rows are logged but are not evidence: requests count the 20 weight rows only.
    assert (challenger.requests, challenger.errors, challenger.total, challenger.correct) == (20, 1, 10, 9)
    assert challenger.assigned == 0  # header pins never count, and the weight rows predate the step
    # OK rows have latencies 6..100: percentile_cont (and its SQLite equivalent) interpolates 99.06
    assert champion.p99_latency_ms == pytest.approx(99.06)
    assert champion.p50_latency_ms == pytest.approx(53.0)  # the median of 6..100


def test_cache_hits_and_degraded_answers_are_not_latency_evidence(staged):
    from sqlalchemy import insert

    from ingot.inference_log.schema import inference_log

    experiment = "digits-v2-vs-v1-cache1"
    now = utc_now()

    def row(i: int, latency: float, **extra):  # type: ignore[no-untyped-def]
        return {"request_id": f"r{i}", "row": 0, "ts": now, "model": MODEL, "experiment": experiment,
                "variant": "champion", "assignment": "weight", "model_version": 1, "signature": "serving_default",
                "latency_ms": latency, "status": "OK", "evidence": True, "cache_hit": False, "degraded": None,
                **extra}

    rows = [row(i, 100.0) for i in range(50)]
    rows += [row(100 + i, 0.5, cache_hit=True) for i in range(50)]  # fast hits would drag p99 down
    rows += [row(200 + i, 5000.0, degraded="default", evidence=False) for i in range(5)]  # degraded: never evidence
    with staged.engine.begin() as conn:
        conn.execute(insert(inference_log), rows)
    champion = arm_counts(staged.engine, MODEL, experiment)["champion"]
    assert champion.p99_latency_ms == pytest.approx(100.0)
    assert champion.requests == 100  # hits are still the arm's answers; degraded rows are not


def test_the_sample_ratio_counts_random_requests_and_the_step_counts_trusted_sticky_ones_too(staged):
    """A sticky caller's requests all go one way, so only per-request random assignments are
    independent draws for the SRM check; a request of several rows is one draw. The step counts
    evidence: sticky rows only when the gateway trusted their key (marked evidence), never pins."""
    from sqlalchemy import insert

    from ingot.inference_log.schema import inference_log

    experiment = "digits-v2-vs-v1-def456"
    since = utc_now()
    log_rows(staged.engine, experiment, "challenger", requests=12, assignment="sticky", ts=since + timedelta(seconds=1),
             evidence=True)
    log_rows(staged.engine, experiment, "challenger", requests=5, assignment="sticky", ts=since + timedelta(seconds=1))
    log_rows(staged.engine, experiment, "challenger", requests=4, assignment="header", ts=since + timedelta(seconds=1))
    log_rows(staged.engine, experiment, "challenger", requests=3, assignment="weight", ts=since + timedelta(seconds=1))
    rows = [{"request_id": "batch-of-eight", "row": r, "ts": since + timedelta(seconds=2), "model": MODEL,
             "experiment": experiment, "variant": "champion", "assignment": "weight", "model_version": 1,
             "signature": "serving_default", "latency_ms": 5.0, "status": "OK", "evidence": True} for r in range(8)]
    with staged.engine.begin() as conn:
        conn.execute(insert(inference_log), rows)
    counts = arm_counts(staged.engine, MODEL, experiment, step_since=since)
    assert (counts["challenger"].assigned, counts["challenger"].step_requests) == (3, 15)
    assert (counts["champion"].requests, counts["champion"].assigned, counts["champion"].step_requests) == (8, 1, 1)


def test_one_unfinished_rollout_per_model_is_enforced_by_the_database(staged):
    store = RolloutStore(staged)
    store.create(model=MODEL, champion=1, challenger=2, steps=[10], policy={}, target=TARGET, actor="a")
    with staged.engine.begin() as conn, pytest.raises(Exception, match="(?i)unique"):
        conn.execute(text(
            "INSERT INTO rollouts (model, experiment, champion_version, challenger_version, state, steps, "
            "step_index, step_started_at, policy, target, analysis, created_by, created_at, updated_at) "
            "VALUES ('digits', 'x', 1, 2, 'analyzing', '[10]', 0, CURRENT_TIMESTAMP, '{}', '{}', '{}', 'a', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))


def test_two_controller_processes_exactly_one_acts(staged, registry_url, tmp_path):
    store = RolloutStore(staged)
    rollout = store.create(model=MODEL, champion=1, challenger=2, steps=[50], policy=POLICY.to_dict(),
                           target=TARGET, actor="alice")
    staged.transition(MODEL, 2, Stage.CHALLENGER, reason="test", actor="alice")
    log_rows(staged.engine, rollout.experiment, "champion", requests=2000, labelled=2000, correct=1440)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=2000, labelled=2000, correct=1340)
    actions = tmp_path / "actions.log"
    start_at = time.time() + 3.0  # both processes past their imports before either reconciles
    procs = [subprocess.Popen([sys.executable, "-m", "tests.rollout.controller_process", registry_url,
                               str(rollout.id), str(actions), str(start_at)], cwd=REPO)
             for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    lines = [line.split() for line in actions.read_text().splitlines()]
    assert len({pid for pid, *_ in lines}) == 1  # one process did everything
    changes = [rest for i, (_, *rest) in enumerate(lines) if i == 0 or lines[i - 1][1:] != rest]
    assert changes == [["prepare", "2"], ["set_weight", "50"], ["set_weight", "0"]]
    assert store.get(rollout.id).state == "rolled_back"
    assert [t.to_state for t in store.get(rollout.id).transitions].count("rolled_back") == 1


def test_a_controller_process_killed_mid_promotion_is_finished_by_another(staged, registry_url, tmp_path):
    store = RolloutStore(staged)
    rollout = store.create(model=MODEL, champion=1, challenger=2, steps=[50], policy=POLICY.to_dict(),
                           target=TARGET, actor="alice")
    staged.transition(MODEL, 2, Stage.CHALLENGER, reason="test", actor="alice")
    rollout = store.transition(rollout, "warming", reason="test", actor="alice", evidence={})
    rollout = store.transition(rollout, "analyzing", reason="test", actor="alice", evidence={},
                               step_started_at=utc_now())
    log_rows(staged.engine, rollout.experiment, "champion", requests=1000, labelled=1000, correct=600)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=1000, labelled=1000, correct=800)
    actions = tmp_path / "actions.log"

    def controller_process(mode: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tests.rollout.controller_process", registry_url,
                                 str(rollout.id), str(actions), "0", mode], cwd=REPO)

    first = controller_process("hang-in-promote")
    try:
        deadline = time.monotonic() + 60
        while not (actions.exists() and "promote" in actions.read_text()):
            assert time.monotonic() < deadline and first.poll() is None, "never reached the promotion"
            time.sleep(0.05)
        first.kill()  # SIGKILL mid-promotion: no cleanup, the lease simply stops being renewed
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert store.get(rollout.id).state == "promoting"  # the decision was written before the action
    assert staged.champion(MODEL).version == 1
    second = controller_process("takeover")
    assert second.wait(timeout=60) == 0
    assert store.get(rollout.id).state == "promoted"
    assert staged.champion(MODEL).version == 2
    pids = [line.split()[0] for line in actions.read_text().splitlines() if line.split()[1] == "promote"]
    assert len(pids) == 2 and pids[0] != pids[1]  # the second process ran the promotion again, to the end


def test_only_a_candidate_can_be_tested_and_nothing_is_written_otherwise(staged, actuator):
    controller = controller_for(staged, actuator)
    with pytest.raises(ConfigError, match="digits:1 is champion; only a READY candidate"):
        controller.start(MODEL, 1, steps=[10], policy=POLICY, target=TARGET)
    controller.start(MODEL, 2, steps=[10], policy=POLICY, target=TARGET)
    controller.override(MODEL, "rollback", reason="bad", actor="bob")
    with pytest.raises(ConfigError, match="digits:2 is rejected"):
        controller.start(MODEL, 2, steps=[10], policy=POLICY, target=TARGET)
    assert len(controller.store.list(MODEL)) == 1


def test_a_guardrail_rollback_leaves_the_challenger_testable_again(staged, actuator):
    """Upstream failures roll back, but they say as much about a server as about the model: the
    challenger goes back to candidate, with the guardrail recorded."""
    controller, rollout = started(staged, actuator, policy=Policy(min_labels=200, margin=0.02, min_error_requests=50))
    log_rows(staged.engine, rollout.experiment, "champion", requests=200)
    log_rows(staged.engine, rollout.experiment, "challenger", requests=200, errors=40, error_status="INTERNAL")
    rollout = controller.reconcile(rollout.id)
    assert rollout.state == "rolled_back" and actuator.weight == 0
    deciding = next(t for t in controller.store.get(rollout.id).transitions if t.to_state == "rolling_back")
    assert deciding.evidence["guardrail"] is True and "error rate" in deciding.reason
    assert staged.get_version(MODEL, 2).stage is Stage.CANDIDATE
    assert "rolled back" in staged.events(MODEL, 2)[-1].reason


def test_caller_errors_are_neither_evidence_nor_guardrail_errors(staged, actuator):
    """100 malformed requests on the challenger (INVALID_ARGUMENT, even if assigned at random)
    leave its error rate alone; upstream failures count."""
    experiment = "digits-v2-vs-v1-fed000"
    log_rows(staged.engine, experiment, "challenger", requests=150, errors=100, error_status="INVALID_ARGUMENT")
    log_rows(staged.engine, experiment, "challenger", requests=10, errors=2, error_status="DEADLINE_EXCEEDED")
    counts = arm_counts(staged.engine, MODEL, experiment)["challenger"]
    assert (counts.requests, counts.errors, counts.assigned) == (60, 2, 160)  # SRM: every random assignment
