"""The loop's side of an A/B rollout: start it as a person would (`ingot rollout start`), drive
traffic until the controller decides, then the status, the by-hand withdrawal when the budget runs
out undecided, and the report. A part of `Loop` (ingot.loop.run), kept apart for size."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingot.loop.summary import LoopResult

TERMINAL = ("promoted", "rolled_back", "inconclusive", "aborted")


class RolloutSteps:
    """Mixed into `Loop`: these are the attributes and methods of it they use."""

    o: Any                     # LoopOptions
    target: dict[str, Any]     # the rollout target (upstreams, routing table, token files)
    driver: Any                # TrafficDriver
    controller: Any            # the `ingot rollout run` child
    supervisor: Any
    registry_url: str
    result: LoopResult
    workdir: Path
    say: Callable[..., None]
    ingot: Callable[..., int]
    registry: Callable[[], Any]

    def _start_rollout(self, challenger: int, *, actor: str) -> None:
        self.ingot(["rollout", "start", self.o.model, "--challenger", str(challenger), "--steps", self.o.steps,
                    "--policy", str(self.o.policy), "--routes", self.target["routes_file"],
                    "--champion-rest", self.target["champion"]["rest"],
                    "--champion-grpc", self.target["champion"]["grpc"],
                    "--champion-model-config", self.target["champion"]["model_config_file"],
                    "--challenger-rest", self.target["challenger"]["rest"],
                    "--challenger-grpc", self.target["challenger"]["grpc"],
                    "--challenger-model-config", self.target["challenger"]["model_config_file"],
                    "--base-path", self.target["champion"]["base_path"],
                    "--feedback-token-file", self.target["feedback_token_file"],
                    "--trusted-caller-header", self.target["trusted_caller_header"],
                    "--capture-sample", f"{self.o.capture_sample:g}", "--actor", actor,
                    "--registry", self.registry_url])

    def _drive_to_decision(self, budget: int, phase: str) -> Any:
        """Full-speed traffic (counted as `phase`) until the rollout reaches a terminal state or
        the budget is spent; then a moment for the controller to carry the decision out."""
        last_line = [""]

        def finished() -> bool:
            self.supervisor.check_alive()
            state = self._rollout_state()
            line = self._rollout_line()
            if line != last_line[0]:
                last_line[0] = line
            return state in TERMINAL

        def progress(stats: Any) -> None:
            self.say(f"  ... {stats.line()} | {last_line[0]}")

        self.driver.phase = phase
        requests_before = self.driver.stats.requests
        stats = asyncio.run(self.driver.run(stop=finished, max_requests=budget, concurrency=self.o.concurrency,
                                            progress=progress))
        deadline = time.monotonic() + 60
        while self._rollout_state() not in TERMINAL and time.monotonic() < deadline:
            if self.controller.process.poll() is not None:
                break
            time.sleep(0.5)
        self.say(f"  sent: {stats.requests - requests_before} requests in this stage; in all {stats.line()}")
        return stats

    def _finish_rollout(self, budget: int) -> str:
        """Status, the by-hand withdrawal when undecided, the report; returns the final state."""
        common = ["--registry", self.registry_url]
        self.ingot(["rollout", "status", self.o.model, *common])
        state = self._rollout_state()
        if state not in TERMINAL:
            self.say(f"  no decision within the traffic budget ({budget} requests): the rollout is "
                     f"still {state}; withdrawing the challenger by hand")
            self.ingot(["rollout", "rollback", self.o.model, "--reason",
                        "make run: traffic budget spent without a decision", "--actor", "make-run", *common])
            state = self._rollout_state()
        report = self.workdir / "rollout-report.html"
        self.ingot(["rollout", "report", self.o.model, "-o", str(report), *common])
        self.result.reports["rollout report"] = str(report)
        return state

    def _rollout_state(self) -> str:
        from ingot.rollout.store import RolloutStore

        with self.registry() as registry:
            return RolloutStore(registry).latest(self.o.model).state

    def _labels_at_decision(self) -> dict[str, int]:
        """Labelled rows per arm in the evidence of the latest rollout's deciding transition."""
        from ingot.rollout.store import RolloutStore

        with self.registry() as registry:
            store = RolloutStore(registry)
            transitions = store.get(store.latest(self.o.model).id).transitions
        for transition in reversed(transitions):
            counts = transition.evidence.get("counts")
            if counts:
                return {arm: int(c.get("labelled") or 0) for arm, c in counts.items()}
        return {}

    def _rollout_line(self) -> str:
        from ingot.rollout.controller import Controller
        from ingot.rollout.service import verdict_document

        with self.registry() as registry:
            doc = verdict_document(Controller(registry), self.o.model)
        counts = doc.get("counts") or {}
        arms = []
        for arm in ("champion", "challenger"):
            c = counts.get(arm) or {}
            if c.get("accuracy") is not None:
                arms.append(f"{arm} {c['correct']}/{c['labelled']} = {c['accuracy']:.3f}")
        interval = doc.get("interval")
        ci = f", difference in [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else ""
        return f"rollout {doc.get('state')} at {doc.get('weight')}%: {'; '.join(arms) or 'no labels yet'}{ci}"
