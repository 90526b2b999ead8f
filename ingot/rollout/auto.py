"""Rollouts started without a person: the rule `Controller.auto_start` applies on every pass.

A model whose most recent rollout ran under a policy with `auto: true`, and that has no unfinished
rollout, gets its next one when a retraining run that a trigger started (drift, labelled accuracy
below the floor, new labels) registered a READY candidate the gate blessed, newer than the
champion and never in a rollout before. It starts with the previous rollout's target, steps and
policy (the same servers and routing table), and the reason names the trigger, the run and the
gate's verdict. With `auto: false` (the default) the candidate waits for `ingot rollout start`.

The version is linked to its trigger through the pipeline run id its registry record carries
(`TriggerStore.for_run`); the trigger's run must have succeeded, so a KFP run that registered but
has not finished yet is asked about (`refresh`) before its version is rolled out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingot.errors import NotFoundError
from ingot.registry.records import Stage, Status
from ingot.rollout.analysis import Policy

if TYPE_CHECKING:
    from ingot.monitor.triggers import Trigger, TriggerStore
    from ingot.registry import ModelVersion, Registry
    from ingot.rollout.store import Rollout, RolloutStore

AUTO_ACTOR = "ingot-rollout (policy auto)"
MAX_GATE_TEXT = 300  # the gate's reasons in the one-line reason (all of them are in the evidence)

TriggerRefresh = Callable[["TriggerStore", "Trigger"], "Trigger"]


@dataclass(frozen=True)
class AutoCandidate:
    """A version the controller may roll out on its own, and why."""

    version: ModelVersion
    trigger: Trigger
    previous: Rollout
    policy: Policy

    def reason(self) -> str:
        kinds = " and ".join(self.trigger.kinds) or "retraining"
        gate = "; ".join(self.version.reasons)
        if len(gate) > MAX_GATE_TEXT:
            gate = gate[:MAX_GATE_TEXT - 3] + "..."
        return (f"policy auto: true; {kinds} trigger #{self.trigger.id} ({self.trigger.reason}) started run "
                f"{self.trigger.run_id or self.trigger.pipeline_run_id}, which {self.trigger.state}; the gate blessed "
                f"{self.version.label}" + (f" ({gate})" if gate else ""))

    def evidence(self) -> dict[str, Any]:
        t = self.trigger
        return {"auto": {
            "policy_auto": True, "previous_rollout": self.previous.id,
            "trigger": {"id": t.id, "kinds": t.kinds, "reason": t.reason, "backend": t.backend, "run_id": t.run_id,
                        "pipeline_run_id": self.version.pipeline_run_id, "state": t.state, "log": t.log_path},
            "version": self.version.version, "record_id": self.version.id,
            "gate": {"blessed": self.version.blessed, "reasons": self.version.reasons},
        }}


def auto_policy(store: RolloutStore, model: str) -> tuple[Rollout | None, str]:
    """(the model's most recent rollout, when it is finished and its policy says auto), else
    (None, why not)."""
    try:
        latest = store.latest(model)
    except NotFoundError:
        return None, f"{model} has no rollout to take a policy from"
    if not latest.finished:
        return None, f"rollout #{latest.id} of {model} is still {latest.state}"
    if not Policy.from_dict(latest.policy).auto:
        return None, f"rollout #{latest.id}'s policy has auto: false; candidates wait for `ingot rollout start`"
    return latest, ""


def find_candidate(registry: Registry, store: RolloutStore, triggers: TriggerStore, model: str, *,
                   refresh: TriggerRefresh | None = None) -> tuple[AutoCandidate | None, str]:
    """(the newest version to roll out now, "") or (None, why none). The newest blessed READY
    candidate that came from a trigger decides: while its run is still finishing, nothing starts."""
    from ingot.monitor.triggers import IN_FLIGHT, SUCCEEDED

    previous, why = auto_policy(store, model)
    if previous is None:
        return None, why
    champion = registry.champion(model)
    if champion is None or champion.version is None:
        return None, f"{model} has no champion"
    tested = store.challenged(model)
    for version in registry.list_versions(model, include_rejections=False):
        if (version.version is None or version.version <= champion.version or version.version in tested
                or version.stage is not Stage.CANDIDATE or version.status is not Status.READY
                or not version.blessed or not version.pipeline_run_id):
            continue
        trigger = triggers.for_run(model, version.pipeline_run_id)
        if trigger is None:
            continue  # a run a person started: a person starts its rollout
        if trigger.state in IN_FLIGHT and refresh is not None:
            trigger = refresh(triggers, trigger)
        if trigger.state not in IN_FLIGHT and trigger.state != SUCCEEDED:
            continue  # its run failed after registering: nothing says the version is what it meant to make
        if trigger.state != SUCCEEDED:
            return None, (f"{version.label} came from trigger #{trigger.id}, whose run {trigger.run_id} is "
                          f"{trigger.state}")
        return AutoCandidate(version, trigger, previous, Policy.from_dict(previous.policy)), ""
    return None, (f"no READY blessed candidate of {model} newer than champion v{champion.version}, from a "
                  "triggered run and never in a rollout")
