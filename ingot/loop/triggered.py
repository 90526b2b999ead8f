"""The loop's view of a retraining run the monitor triggered: the newest trigger, waiting for its
run to finish (with progress lines), and stopping it when the loop ends early. The run itself
belongs to the trigger table and pipelines.launch; this only watches it as a person would."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PROGRESS_EVERY_S = 10.0


@dataclass
class TriggeredOutcome:
    state: str
    log_path: str | None
    version: int | None  # the newest registry version once the run succeeded


class TriggeredRuns:
    """The triggers of one model in the registry at `registry_url`."""

    def __init__(self, registry_url: str, model: str, say: Callable[[str], None]) -> None:
        self.registry_url = registry_url
        self.model = model
        self.say = say
        self.pid: int | None = None  # the run this loop waited for (stopped on the way out)

    def _registry(self) -> Any:
        from ingot.registry import Registry

        return Registry.from_url(self.registry_url)

    def latest(self) -> Any:
        """The model's newest trigger record, or None."""
        from ingot.monitor.triggers import TriggerStore

        with self._registry() as registry:
            history = TriggerStore(registry.engine).history(self.model, limit=1)
        return history[0] if history else None

    def wait(self, trigger: Any) -> TriggeredOutcome:
        """Until the trigger's run is no longer starting or running (a dead local run is recorded
        as failed by pipelines.launch.refresh)."""
        from ingot.monitor.triggers import TriggerStore
        from pipelines.launch import refresh

        with self._registry() as registry:
            store = TriggerStore(registry.engine)
            self.pid = trigger.pid
            self.say(f"  retraining run started (trigger #{trigger.id}, pid {trigger.pid}, log {trigger.log_path}); "
                     "waiting for it")
            started = last = time.perf_counter()
            while trigger.state in ("starting", "running"):
                time.sleep(1.0)
                trigger = refresh(store, store.get(trigger.id))
                if time.perf_counter() - last >= PROGRESS_EVERY_S:
                    last = time.perf_counter()
                    self.say(f"  ... retraining {trigger.state} for {time.perf_counter() - started:.0f} s")
            self.say(f"  retraining {trigger.state} after {time.perf_counter() - started:.0f} s: {trigger.detail}")
            newest = registry.list_versions(self.model, limit=1)
            version = newest[0].version if newest and trigger.state == "succeeded" else None
        return TriggeredOutcome(trigger.state, trigger.log_path, version)

    def stop(self) -> str | None:
        """SIGTERM the run this loop waited for, if it still runs; what was stopped, or None."""
        if self.pid is None:
            return None
        from ingot.monitor.triggers import process_alive

        if not process_alive(self.pid):
            return None
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                return None
        return f"retraining run (pid {self.pid})"
