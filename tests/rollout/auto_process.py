"""A controller in its own process for the racing auto-start test: for a moment, every few
milliseconds, asks to start the rollout the policy's `auto` calls for, and appends what it
started, with this process's id, to a file."""

from __future__ import annotations

import os
import sys
import time

from ingot.registry import Registry
from ingot.rollout.controller import Controller


class Idle:
    def prepare(self, rollout) -> None: ...

    def available(self, rollout, arm, version) -> bool:
        return False

    def set_weight(self, rollout, weight) -> None: ...

    def promote(self, rollout) -> None: ...


def main(url: str, started: str, start_at: str) -> None:
    registry = Registry.from_url(url)
    controller = Controller(registry, actuator_factory=lambda target: Idle())
    while time.time() < float(start_at):
        time.sleep(0.002)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        rollout = controller.auto_start("digits")
        if rollout is not None:
            with open(started, "a") as out:
                out.write(f"{os.getpid()} {rollout.challenger_version}\n")
        time.sleep(0.01)
    registry.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
