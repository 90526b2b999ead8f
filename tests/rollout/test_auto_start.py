"""The controller starts a rollout on its own (policy `auto: true`) for a READY, blessed candidate
that a triggered retraining run registered, and for nothing else; on SQLite and PostgreSQL.

Each test first runs a rollout of digits:2 under the policy (promoted: digits:2 is the champion),
so the model's most recent rollout names the policy, target and steps the next one inherits."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from ingot.cli.rollout import _refresh_trigger, format_status, status_document
from ingot.monitor.triggers import KFP, LOCAL, RUNNING, SUCCEEDED, TriggerStore
from ingot.registry import Stage
from ingot.rollout.analysis import Policy
from ingot.rollout.auto import AUTO_ACTOR
from ingot.rollout.controller import Controller
from ingot.rollout.store import RolloutStore
from tests.registry.helpers import publish
from tests.rollout.support import MODEL, TARGET, RecordingActuator

AUTO = Policy(min_labels=200, margin=0.02, auto=True)
REPO = Path(__file__).resolve().parents[2]


def controller_for(registry, actuator: RecordingActuator | None = None, **kwargs) -> Controller:
    actuator = actuator or RecordingActuator()
    actuator.available_versions |= {("challenger", 3), ("challenger", 4)}
    controller = Controller(registry, actuator_factory=lambda target: actuator, **kwargs)
    actuator.store = controller.store
    return controller


def promoted(registry, challenger: int = 2, policy: Policy = AUTO) -> None:
    """A finished rollout of `challenger` under `policy`, promoted by hand; its lease released."""
    controller = controller_for(registry, holder="person")
    controller.start(MODEL, challenger, steps=[10, 50], policy=policy, target=TARGET, actor="alice")
    controller.override(MODEL, "promote", reason="setting the scene", actor="alice")
    controller.store.release(controller.lease_name(MODEL), "person")
    assert registry.champion(MODEL).version == challenger


def triggered(registry, version: int, *, backend: str = KFP, state: str = SUCCEEDED, kinds=("drift",),
              reason: str = "drift in confidence_ks", host: str = "http://kfp.example") -> int:
    """digits:`version` registered by the run of a new trigger; returns the trigger's id."""
    store = TriggerStore(registry.engine)
    claimed = store.claim(MODEL, reason=reason, statistics={"kinds": list(kinds)}, backend=backend,
                          cooldown=timedelta(0))
    if backend == KFP:  # the KFP run id is what its records carry
        run_id = f"kfp-run-{version}"
        publish(registry, MODEL, version, run=run_id)
        store.mark_running(claimed.id, run_id=run_id, host=host)
        if state == SUCCEEDED:
            store.finish(claimed.id, SUCCEEDED, "KFP run state SUCCEEDED")
    else:  # a local run's records carry kfp's local job id, which the runner records when it finishes
        record = publish(registry, MODEL, version, run=f"ingot-retrain-local-{version}")
        store.mark_running(claimed.id, run_id=f"local-{claimed.id}-20260101T000000Z")
        store.finish(claimed.id, SUCCEEDED, "done", produced=record.to_dict())
    return claimed.id


def rollouts(registry) -> list:
    return RolloutStore(registry).list(MODEL)


def test_a_triggered_runs_blessed_candidate_is_rolled_out_with_the_reason_recorded(staged):
    promoted(staged)
    trigger = triggered(staged, 3, kinds=("drift", "new labels"))
    controller = controller_for(staged)
    (rollout,) = controller.reconcile_all()  # started, then advanced in the same pass
    assert rollout.challenger_version == 3
    assert rollout.state in ("warming", "analyzing") and rollout.champion_version == 2
    assert rollout.created_by == AUTO_ACTOR and rollout.steps == [10, 50] and rollout.target == TARGET
    assert Policy.from_dict(rollout.policy) == AUTO
    first = controller.store.get(rollout.id).transitions[0]
    assert first.actor == AUTO_ACTOR
    for words in ("policy auto: true", f"drift and new labels trigger #{trigger}", "drift in confidence_ks",
                  "run kfp-run-3, which succeeded", "the gate blessed digits:3", "accuracy 0.95 >= 0.90"):
        assert words in first.reason
    auto = first.evidence["auto"]
    assert auto["trigger"]["id"] == trigger and auto["trigger"]["kinds"] == ["drift", "new labels"]
    assert auto["trigger"]["pipeline_run_id"] == "kfp-run-3" and auto["gate"]["blessed"] is True
    assert auto["previous_rollout"] == rollouts(staged)[-1].id and auto["policy_auto"] is True
    event = staged.events(MODEL, 3)[-1]
    assert event.to_stage is Stage.CHALLENGER and event.actor == AUTO_ACTOR
    assert f"trigger #{trigger}" in event.reason and "policy auto: true" in event.reason
    text = format_status(status_document(controller, MODEL))
    assert f"started by {AUTO_ACTOR}: " in text and f"trigger #{trigger}" in text
    # the next pass advances it and starts nothing more
    controller.reconcile_all()
    assert len(rollouts(staged)) == 2


def test_the_report_shows_who_started_it_and_why(staged, tmp_path):
    from ingot.rollout.report import write_report

    promoted(staged)
    triggered(staged, 3)
    controller = controller_for(staged)
    controller.reconcile_all()
    rollout = controller.store.latest(MODEL)
    write_report(controller, rollout, tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert f"Started by <b>{AUTO_ACTOR}</b>: " in html and "policy auto: true" in html


def test_a_local_run_is_linked_through_the_pipeline_run_id_it_recorded(staged):
    promoted(staged)
    trigger = triggered(staged, 3, backend=LOCAL, kinds=("accuracy",),
                        reason="labelled accuracy below the gate's floor (95% interval [0.500, 0.600])")
    rollout = controller_for(staged).auto_start(MODEL)
    assert rollout is not None and rollout.challenger_version == 3
    reason = RolloutStore(staged).get(rollout.id).transitions[0].reason
    assert f"accuracy trigger #{trigger}" in reason and f"run local-{trigger}-" in reason


def test_auto_false_leaves_the_candidate_for_a_person(staged):
    promoted(staged, policy=Policy(min_labels=200, margin=0.02))
    triggered(staged, 3)
    controller = controller_for(staged)
    assert controller.reconcile_all() == [] and controller.auto_start(MODEL) is None
    assert staged.get_version(MODEL, 3).stage is Stage.CANDIDATE and len(rollouts(staged)) == 1
    # a person starts it as before
    controller.start(MODEL, 3, steps=[10], policy=Policy(), target=TARGET, actor="alice")
    assert staged.get_version(MODEL, 3).stage is Stage.CHALLENGER


def test_a_candidate_no_trigger_produced_waits_for_a_person(staged):
    promoted(staged)
    publish(staged, MODEL, 3, run="a-run-someone-started")
    TriggerStore(staged.engine).claim(MODEL, reason="drift", statistics={}, backend=KFP)  # another run's trigger
    assert controller_for(staged).reconcile_all() == []
    assert staged.get_version(MODEL, 3).stage is Stage.CANDIDATE


def test_a_version_already_in_a_rollout_is_not_tested_again(staged):
    promoted(staged)
    triggered(staged, 3)
    controller = controller_for(staged)
    rollout = controller.auto_start(MODEL)
    assert rollout is not None
    # undecided: the challenger goes back to candidate, testable again by hand, never again on its own
    store = controller.store
    moved = store.transition(rollout, "rolling_back", reason="test", actor="t", evidence={}, outcome="inconclusive")
    controller._finish_withdrawal(moved, RecordingActuator())
    assert staged.get_version(MODEL, 3).stage is Stage.CANDIDATE
    assert controller.auto_start(MODEL) is None and controller.reconcile_all() == []
    assert len(rollouts(staged)) == 2


def test_a_rejected_candidate_is_not_rolled_out(staged):
    promoted(staged)
    triggered(staged, 3)
    staged.transition(MODEL, 3, Stage.REJECTED, reason="a person looked at it", actor="alice")
    assert controller_for(staged).reconcile_all() == [] and len(rollouts(staged)) == 1


def test_a_candidate_older_than_the_champion_is_not_rolled_out(staged):
    triggered(staged, 3)  # blessed, from a trigger, but the champion becomes v4 first
    publish(staged, MODEL, 4)
    promoted(staged, challenger=4)
    assert controller_for(staged).reconcile_all() == []
    assert staged.get_version(MODEL, 3).stage is Stage.CANDIDATE and len(rollouts(staged)) == 1


def test_nothing_starts_while_a_rollout_is_in_flight(staged):
    promoted(staged)
    triggered(staged, 3)
    triggered(staged, 4)
    controller = controller_for(staged)
    first = controller.auto_start(MODEL)
    assert first is not None and first.challenger_version == 4  # the newest
    assert controller.auto_start(MODEL) is None  # v4's rollout is unfinished
    assert [r.challenger_version for r in controller.reconcile_all()] == [4]
    assert staged.get_version(MODEL, 3).stage is Stage.CANDIDATE


def test_a_kfp_run_that_registered_but_is_still_running_is_asked_about_first(staged):
    from tests.pipelines.kfp_api import fake_kfp_api

    promoted(staged)
    with fake_kfp_api() as kfp_api:
        trigger = triggered(staged, 3, state=RUNNING, host=kfp_api.url)
        controller = controller_for(staged, trigger_refresh=_refresh_trigger)  # what `ingot rollout run` passes
        assert controller.auto_start(MODEL) is None  # the KFP API still says RUNNING
        assert TriggerStore(staged.engine).get(trigger).state == RUNNING
        kfp_api.run_states["kfp-run-3"] = "SUCCEEDED"
        assert controller.auto_start(MODEL) is None  # asked a moment ago: not asked again yet
        controller.trigger_refresh_every_s = 0
        rollout = controller.auto_start(MODEL)
    assert rollout is not None and rollout.challenger_version == 3
    assert TriggerStore(staged.engine).get(trigger).state == SUCCEEDED
    assert "which succeeded" in controller.store.get(rollout.id).transitions[0].reason


def test_a_running_trigger_without_a_refresher_waits(staged):
    promoted(staged)
    triggered(staged, 3, state=RUNNING)
    assert controller_for(staged).reconcile_all() == []
    assert staged.get_version(MODEL, 3).stage is Stage.CANDIDATE


def test_without_the_lease_a_controller_starts_nothing(staged):
    promoted(staged)
    triggered(staged, 3)
    other = controller_for(staged, holder="other")
    assert other.store.acquire(other.lease_name(MODEL), "other", 30)
    assert controller_for(staged, holder="me").auto_start(MODEL) is None
    assert len(rollouts(staged)) == 1


def test_two_racing_controllers_start_exactly_one_rollout(staged):
    promoted(staged)
    triggered(staged, 3)
    controllers = [controller_for(staged, holder=f"controller-{i}") for i in range(2)]
    barrier = threading.Barrier(len(controllers))
    results: list = [None] * len(controllers)
    errors: list[BaseException] = []

    def race(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = controllers[i].auto_start(MODEL)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(controllers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sum(r is not None for r in results) == 1
    assert [r.challenger_version for r in rollouts(staged)] == [3, 2]
    to_challenger = [e for e in staged.events(MODEL, 3) if e.to_stage is Stage.CHALLENGER]
    assert len(to_challenger) == 1


def test_two_controller_processes_start_exactly_one_rollout(staged, registry_url, tmp_path):
    promoted(staged)
    triggered(staged, 3)
    started_file = tmp_path / "started.log"
    start_at = time.time() + 3.0  # both processes past their imports before either looks
    procs = [subprocess.Popen([sys.executable, "-m", "tests.rollout.auto_process", registry_url, str(started_file),
                               str(start_at)], cwd=REPO) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    lines = started_file.read_text().splitlines()
    assert len(lines) == 1 and lines[0].split()[1:] == ["3"]
    assert [r.challenger_version for r in rollouts(staged)] == [3, 2]


@pytest.mark.parametrize("kinds", [("drift",), ("accuracy",), ("new labels",)])
def test_every_trigger_kind_is_named(staged, kinds):
    promoted(staged)
    trigger = triggered(staged, 3, kinds=kinds)
    rollout = controller_for(staged).auto_start(MODEL)
    assert rollout is not None
    assert f"{kinds[0]} trigger #{trigger}" in RolloutStore(staged).get(rollout.id).transitions[0].reason


def test_a_kfp_api_that_never_answers_does_not_stall_the_pass(staged, monkeypatch):
    import socket

    import ingot.cli.rollout as cli

    promoted(staged)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog; nothing ever answers them
    try:
        trigger = triggered(staged, 3, state=RUNNING, host=f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setattr(cli, "REFRESH_TIMEOUT_S", 1.0)
        controller = controller_for(staged, trigger_refresh=cli._refresh_trigger)
        began = time.monotonic()
        assert controller.reconcile_all() == []
        assert time.monotonic() - began < 10
        assert TriggerStore(staged.engine).get(trigger).state == RUNNING
    finally:
        silent.close()
