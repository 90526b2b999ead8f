"""The rollout controller: a state machine persisted in the registry database.

    pending -> warming -> analyzing (one pass per weight step) -> promoting -> promoted
                                   \\-> rolling_back -> rolled_back | inconclusive | aborted

Each reconcile of a rollout takes the model's lease (one controller acts at a time), reads the
per-arm counts by SQL aggregation over the inference log, runs the sequential analysis, and
when the state must change, first writes the transition with its evidence, then acts. The
actions are idempotent, so a controller that restarts in `promoting` or `rolling_back` simply
runs them again and finishes. Each pass also starts the rollouts a policy with `auto: true` asks
for (`auto_start`, the rule in `ingot.rollout.auto`), under the same lease.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ingot.db import utc_now
from ingot.errors import ConfigError, IngotError, NotFoundError
from ingot.registry.records import Stage
from ingot.rollout.analysis import ArmCounts, Policy, SequentialAnalysis, Verdict
from ingot.rollout.counts import arm_counts
from ingot.rollout.store import Rollout, RolloutStore, TransitionConflict, check_steps

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ingot.monitor.triggers import Trigger, TriggerStore
    from ingot.registry import Registry
    from ingot.rollout.actuators import Actuator
    from ingot.rollout.auto import TriggerRefresh

log = logging.getLogger(__name__)
DEFAULT_ACTOR = "ingot-rollout"


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Look:
    """What one reconcile saw: the counts per arm and the verdict on them."""

    counts: dict[str, ArmCounts]
    verdict: Verdict

    def evidence(self) -> dict[str, Any]:
        return {
            "counts": {arm: _counts_dict(c) for arm, c in self.counts.items()},
            "verdict": self.verdict.to_dict(),
        }


def _counts_dict(counts: ArmCounts) -> dict[str, Any]:
    return {"labelled": counts.total, "correct": counts.correct, "accuracy": counts.accuracy,
            "requests": counts.requests, "errors": counts.errors, "error_rate": counts.error_rate,
            "assigned": counts.assigned, "step_requests": counts.step_requests,
            "p50_latency_ms": counts.p50_latency_ms, "p99_latency_ms": counts.p99_latency_ms}


class Controller:
    """Reconciles rollouts; `actuator_factory(target)` builds the actuator a rollout names."""

    def __init__(self, registry: Registry, log_engine: Engine | None = None, *,
                 actuator_factory: Callable[[dict[str, Any]], Actuator] | None = None,
                 holder: str | None = None, lease_ttl_s: float = 30.0, warmup_timeout_s: float = 600.0,
                 actor: str = DEFAULT_ACTOR, clock: Callable[[], datetime] = utc_now,
                 on_transition: Callable[[Rollout, Look | None], None] | None = None,
                 trigger_refresh: TriggerRefresh | None = None, trigger_refresh_every_s: float = 30.0) -> None:
        from ingot.rollout.actuators import actuator_for

        self.registry = registry
        self.store = RolloutStore(registry)
        if log_engine is None:  # the log in the registry's database, its tables created if missing
            from ingot.inference_log.store import InferenceLogStore

            log_engine = InferenceLogStore(registry.engine).engine
        self.log_engine = log_engine
        self.actuator_factory = actuator_factory or actuator_for
        self.holder = holder or default_holder()
        self.lease_ttl_s = lease_ttl_s
        self.warmup_timeout_s = warmup_timeout_s
        self.actor = actor
        self.clock = clock
        self.on_transition = on_transition
        self.trigger_refresh = trigger_refresh  # brings a triggered run's state up to date (KFP: asks the API)
        self.trigger_refresh_every_s = trigger_refresh_every_s  # at most this often per trigger
        self._refreshed: dict[int, float] = {}
        self._triggers: TriggerStore | None = None
        self._auto_said: dict[str, str] = {}  # the last "why not" logged per model (logged when it changes)

    # ------------------------------------------------------------------ starting

    def start(self, model: str, challenger: int, *, steps: list[int], policy: Policy, target: dict[str, Any],
              actor: str | None = None, reason: str | None = None,
              evidence: dict[str, Any] | None = None) -> Rollout:
        """Record a rollout of `challenger` against the current champion; the challenger's registry
        stage becomes `challenger`. Nothing is routed until the challenger is AVAILABLE. `reason`
        (why it starts) goes into the first transition and the registry's stage event."""
        actor = actor or self.actor
        steps = check_steps(steps)
        champion = self.registry.champion(model)
        if champion is None or champion.version is None:
            raise NotFoundError(f"{model} has no champion to test a challenger against")
        candidate = self.registry.get_version(model, challenger)  # a readable NotFoundError for a wrong number
        if candidate.stage not in (Stage.CANDIDATE, Stage.CHALLENGER):
            stage = candidate.stage.value if candidate.stage else f"none (status {candidate.status.value})"
            raise ConfigError(f"{model}:{challenger} is {stage}; only a READY candidate (or the current "
                              "challenger) can be tested against the champion")
        active = self.store.active(model)
        if active is not None:
            raise ConfigError(f"{model} already has an unfinished rollout #{active.id} ({active.experiment}, "
                              f"{active.state}); finish it with `ingot rollout promote|rollback` first")
        self.actuator_factory(target)  # a target the actuator cannot use is refused before anything is written
        rollout = self.store.create(model=model, champion=champion.version, challenger=challenger, steps=steps,
                                    policy=policy.to_dict(), target=target, actor=actor, reason=reason,
                                    evidence=evidence)
        self.registry.transition(model, challenger, Stage.CHALLENGER, actor=actor,
                                 reason=f"A/B rollout #{rollout.id} ({rollout.experiment}) started"
                                 + (f": {reason}" if reason else ""))
        return rollout

    def auto_start_all(self) -> list[Rollout]:
        """Start the rollouts the policy's `auto` asks for (ingot.rollout.auto), one model at a time."""
        started = []
        for model in self.store.models():
            try:
                rollout = self.auto_start(model)
            except IngotError as err:  # e.g. a person started one between our look and our start
                log.info("auto start of %s skipped: %s", model, err)
                continue
            if rollout is not None:
                started.append(rollout)
        return started

    def auto_start(self, model: str) -> Rollout | None:
        """Under the model's lease, start a rollout of the candidate a triggered run produced when the
        most recent rollout's policy says `auto: true`; None (and the reason logged) otherwise."""
        from ingot.monitor.triggers import TriggerStore
        from ingot.rollout.auto import AUTO_ACTOR, auto_policy, find_candidate

        previous, why = auto_policy(self.store, model)  # cheap: no trigger table, no lease for most models
        if previous is None:
            self._say(model, why)
            return None
        if self._triggers is None:
            self._triggers = TriggerStore(self.registry.engine)
        candidate, why = find_candidate(self.registry, self.store, self._triggers, model, refresh=self._refresh)
        if candidate is None:
            self._say(model, why)
            return None
        if not self.store.acquire(self.lease_name(model), self.holder, self.lease_ttl_s):
            self._say(model, f"another controller ({self.store.lease_holder(self.lease_name(model))}) holds "
                      f"{model}'s lease")
            return None
        # Again under the lease: another controller may have started (and even finished) one meanwhile.
        candidate, why = find_candidate(self.registry, self.store, self._triggers, model, refresh=self._refresh)
        if candidate is None:
            self._say(model, why)
            return None
        previous = candidate.previous
        reason = candidate.reason()
        rollout = self.start(model, candidate.version.version or 0, steps=previous.steps, policy=candidate.policy,
                             target=previous.target, actor=AUTO_ACTOR, reason=reason, evidence=candidate.evidence())
        log.info("rollout #%d of %s started for v%d: %s", rollout.id, model, rollout.challenger_version, reason)
        self._auto_said.pop(model, None)
        if self.on_transition is not None:
            self.on_transition(rollout, None)
        return rollout

    def _refresh(self, store: TriggerStore, trigger: Trigger) -> Trigger:
        """`trigger_refresh`, at most once per `trigger_refresh_every_s` for each trigger (asking a
        KFP API on every pass would be a request a second for nothing)."""
        now = time.monotonic()
        if self.trigger_refresh is None or now - self._refreshed.get(trigger.id, -math.inf) < self.trigger_refresh_every_s:
            return trigger
        self._refreshed[trigger.id] = now
        return self.trigger_refresh(store, trigger)

    def _say(self, model: str, why: str) -> None:
        if self._auto_said.get(model) != why:
            self._auto_said[model] = why
            log.info("no auto rollout of %s: %s", model, why)

    # ------------------------------------------------------------------ the loop

    def reconcile_all(self) -> list[Rollout]:
        """One pass: advance every unfinished rollout, then start (and advance) what the policy's
        `auto` asks for (what `ingot rollout run --once` does)."""
        done = []
        for rollout in self.store.unfinished():
            done.append(self.reconcile(rollout.id))
        for rollout in self.auto_start_all():
            done.append(self.reconcile(rollout.id))
        return done

    def release_leases(self) -> None:
        """Give up every lease this controller holds (a graceful shutdown), so another controller
        or a manual override can act at once instead of waiting for the lease to expire."""
        for rollout in self.store.unfinished():
            self.store.release(self.lease_name(rollout.model), self.holder)

    def lease_name(self, model: str) -> str:
        return f"rollout:{model}"

    def reconcile(self, rollout_id: int) -> Rollout:
        """Advance one rollout as far as it can go now; without the lease, only read it."""
        rollout = self.store.get(rollout_id, transitions=False)
        if rollout.finished:
            return rollout
        if not self.store.acquire(self.lease_name(rollout.model), self.holder, self.lease_ttl_s):
            return rollout
        try:
            with self._lease_heartbeat(rollout.model):
                rollout = self._advance(rollout)
        except TransitionConflict as err:
            log.info("%s", err)
            rollout = self.store.get(rollout_id, transitions=False)
        return rollout

    @contextlib.contextmanager
    def _lease_heartbeat(self, model: str) -> Iterator[None]:
        """Renew the lease every third of its TTL while an action runs (a promotion waits for a
        version to load, which can take longer than the TTL)."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease_ttl_s / 3):
                try:
                    self.store.acquire(self.lease_name(model), self.holder, self.lease_ttl_s)
                except Exception:  # noqa: BLE001 - the database may be briefly down; the next beat retries
                    log.warning("could not renew the lease on %s", model)

        beat = threading.Thread(target=renew, name=f"lease-{model}", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join(timeout=10)

    def _advance(self, rollout: Rollout) -> Rollout:
        for _ in range(8):  # a few transitions per pass at most (e.g. warming -> analyzing -> promoting)
            before = (rollout.state, rollout.step_index)
            rollout = self._step(rollout)
            if rollout.finished or (rollout.state, rollout.step_index) == before:
                break
        return rollout

    def _step(self, rollout: Rollout) -> Rollout:
        actuator = self.actuator_factory(rollout.target)
        if rollout.state == "pending":
            actuator.prepare(rollout)
            return self._move(rollout, "warming", "challenger server asked to load "
                              f"{rollout.model}:{rollout.challenger_version}", {})
        if rollout.state == "warming":
            if actuator.available(rollout, "challenger", rollout.challenger_version):
                evidence = {"challenger_available": True}
                moved = self._move(rollout, "analyzing", f"{rollout.model}:{rollout.challenger_version} is AVAILABLE; "
                                   f"challenger weight {rollout.steps[0]}%", evidence,
                                   step_index=0, step_started_at=self.clock())
                actuator.set_weight(moved, moved.weight)
                return moved
            waited = (self.clock() - rollout.updated_at).total_seconds()
            if waited > self.warmup_timeout_s:
                return self._withdraw(rollout, "aborted", f"the challenger did not become AVAILABLE within "
                                      f"{self.warmup_timeout_s:g} s", {"waited_s": waited}, actuator)
            return rollout
        if rollout.state == "analyzing":
            return self._analyze(rollout, actuator)
        if rollout.state == "promoting":
            return self._finish_promotion(rollout, actuator)
        if rollout.state == "rolling_back":
            return self._finish_withdrawal(rollout, actuator)
        return rollout

    def look(self, rollout: Rollout) -> tuple[Look, SequentialAnalysis]:
        """Counts and verdict for the rollout now, and the sequential state after this look;
        nothing is written."""
        counts = arm_counts(self.log_engine, rollout.model, rollout.experiment, step_since=rollout.step_started_at)
        policy = Policy.from_dict(rollout.policy)
        sequential = SequentialAnalysis.from_state(policy, rollout.analysis)
        elapsed = (self.clock() - rollout.created_at).total_seconds()
        weight = rollout.weight if rollout.state == "analyzing" else None
        verdict = sequential.look(counts["champion"], counts["challenger"], weight=weight, elapsed_s=elapsed)
        return Look(counts, verdict), sequential

    def _analyze(self, rollout: Rollout, actuator: Actuator) -> Rollout:
        actuator.set_weight(rollout, rollout.weight)  # idempotent: repairs a table someone edited by hand
        look, sequential = self.look(rollout)
        verdict = look.verdict
        evidence = look.evidence()
        if verdict.decision == "rollback":
            if verdict.checks.get("guardrail"):
                evidence["guardrail"] = True  # not a verdict on accuracy: the version stays testable
            return self._withdraw(rollout, "rolled_back", "; ".join(verdict.reasons), evidence, actuator,
                                  analysis=sequential.state())
        if verdict.decision == "inconclusive":
            return self._withdraw(rollout, "inconclusive", "; ".join(verdict.reasons), evidence, actuator,
                                  analysis=sequential.state())
        if verdict.decision == "promote" and not rollout.last_step:
            index = rollout.step_index + 1
            moved = self._move(rollout, "analyzing", f"step {rollout.weight}% passed ({verdict.reasons[0]}); "
                               f"challenger weight {rollout.steps[index]}%", evidence, step_index=index,
                               step_started_at=self.clock(), analysis=sequential.state(), verdict=verdict.to_dict())
            actuator.set_weight(moved, moved.weight)
            return moved
        if verdict.decision == "promote":
            moved = self._move(rollout, "promoting", "; ".join(verdict.reasons), evidence,
                               analysis=sequential.state(), verdict=verdict.to_dict())
            return self._finish_promotion(moved, actuator)
        return self.store.save_analysis(rollout, sequential.state(), {**verdict.to_dict(), **evidence})

    # ------------------------------------------------------------------ actions

    def _move(self, rollout: Rollout, to_state: str, reason: str, evidence: dict[str, Any], *,
              actor: str | None = None, **changes: Any) -> Rollout:
        moved = self.store.transition(rollout, to_state, reason=reason, actor=actor or self.actor,
                                      evidence=evidence, **changes)
        log.info("rollout #%d %s: %s -> %s: %s", rollout.id, rollout.model, rollout.state, to_state, reason)
        if self.on_transition is not None:
            self.on_transition(moved, None)
        return moved

    def _withdraw(self, rollout: Rollout, outcome: str, reason: str, evidence: dict[str, Any],
                  actuator: Actuator, *, actor: str | None = None, **changes: Any) -> Rollout:
        """Write the decision, then the challenger's weight goes to 0 in one routing write."""
        moved = self._move(rollout, "rolling_back", reason, {**evidence, "outcome": outcome}, actor=actor,
                           outcome=outcome, **changes)
        return self._finish_withdrawal(moved, actuator)

    def _finish_withdrawal(self, rollout: Rollout, actuator: Actuator) -> Rollout:
        actuator.set_weight(rollout, 0)
        outcome = rollout.outcome or "rolled_back"
        last = self._last_reason(rollout)
        # Rolled back on accuracy, or stopped by a person: rejected. Rolled back by a guardrail
        # (errors or latency: a server's trouble as much as the model's), undecided or never warmed
        # up: nothing is known against its answers, so it goes back to candidate, testable again.
        # A rejected version can be re-admitted by hand (`ingot rollout readmit`).
        deciding = self.store.get(rollout.id).transitions[-1].evidence
        manual, guardrail = bool(deciding.get("manual")), bool(deciding.get("guardrail"))
        stage = Stage.REJECTED if (outcome == "rolled_back" and not guardrail) or manual else Stage.CANDIDATE
        current = self.registry.get_version(rollout.model, rollout.challenger_version).stage
        if current is Stage.CHALLENGER:
            self.registry.transition(rollout.model, rollout.challenger_version, stage, actor=last[1],
                                     reason=f"rollout #{rollout.id} {outcome.replace('_', ' ')}: {last[0]}")
        return self._move(rollout, outcome, f"challenger weight is 0; {rollout.model}:{rollout.champion_version} "
                          "stays champion", {"weight": 0})

    def _finish_promotion(self, rollout: Rollout, actuator: Actuator) -> Rollout:
        actuator.promote(rollout)
        version = self.registry.get_version(rollout.model, rollout.challenger_version)
        if version.stage is not Stage.CHAMPION:
            reason, actor = self._last_reason(rollout)
            self.registry.transition(rollout.model, rollout.challenger_version, Stage.CHAMPION, actor=actor,
                                     reason=f"rollout #{rollout.id} promoted: {reason}")
        return self._move(rollout, "promoted", f"{rollout.model}:{rollout.challenger_version} serves as champion; "
                          f"{rollout.model}:{rollout.champion_version} archived", {"weight": 0})

    def _last_reason(self, rollout: Rollout) -> tuple[str, str]:
        """The reason and actor of the transition that decided (for the registry's stage event)."""
        history = self.store.get(rollout.id).transitions
        deciding = history[-1] if history else None
        if deciding is None:
            return "no reason recorded", self.actor
        figures = deciding.evidence.get("counts")
        text = deciding.reason
        if figures:
            parts = [f"{arm} {c['correct']}/{c['labelled']} correct, {c['errors']}/{c['requests']} errors"
                     for arm, c in figures.items()]
            text += " (" + "; ".join(parts) + ")"
        return text, deciding.actor

    # ------------------------------------------------------------------ manual overrides

    def override(self, model: str, decision: str, *, reason: str, actor: str) -> Rollout:
        """`ingot rollout promote|rollback`: recorded with the actor and the figures at that moment,
        then carried out here and now under the lease. A manual rollback ends `aborted` (by hand),
        the challenger rejected with the person's reason."""
        if not reason.strip():
            raise ConfigError("a manual promote or rollback needs --reason")
        rollout = self.store.active(model)
        if rollout is None:
            raise NotFoundError(f"{model} has no unfinished rollout")
        if not self.store.acquire(self.lease_name(model), self.holder, self.lease_ttl_s):
            raise ConfigError(f"another controller ({self.store.lease_holder(self.lease_name(model))}) holds "
                              f"{model}'s rollout lease; try again in {self.lease_ttl_s:g} s or stop it")
        with self._lease_heartbeat(model):
            return self._override(rollout, decision, reason=reason, actor=actor)

    def _override(self, rollout: Rollout, decision: str, *, reason: str, actor: str) -> Rollout:
        actuator = self.actuator_factory(rollout.target)
        evidence: dict[str, Any] = {"manual": True}
        if rollout.state == "analyzing":
            look, _ = self.look(rollout)
            evidence.update(look.evidence())
        text = f"manual {decision} by {actor}: {reason.strip()}"
        if decision == "promote":
            if rollout.state in ("promoting", "rolling_back"):
                raise ConfigError(f"rollout #{rollout.id} is already {rollout.state}")
            moved = self._move(rollout, "promoting", text, evidence, actor=actor)
            return self._finish_promotion(moved, actuator)
        if decision == "rollback":
            if rollout.state == "promoting":
                raise ConfigError(f"rollout #{rollout.id} is promoting; it finishes first")
            if rollout.state == "rolling_back":
                return self._finish_withdrawal(rollout, actuator)
            return self._withdraw(rollout, "aborted", text, evidence, actuator, actor=actor)
        raise ConfigError(f"unknown decision {decision!r}; expected promote or rollback")
