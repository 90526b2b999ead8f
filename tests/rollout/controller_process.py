"""A controller in its own process for the two-controllers test: reconciles one rollout for a
while with an actuator that appends every action, with this process's id, to a file."""

from __future__ import annotations

import os
import sys
import time

from ingot.registry import Registry
from ingot.rollout.controller import Controller


class FileActuator:
    def __init__(self, path: str, hang_in_promote: bool = False) -> None:
        self.path = path
        self.hang_in_promote = hang_in_promote

    def _write(self, *words: object) -> None:
        with open(self.path, "a") as out:
            out.write(" ".join(str(w) for w in (os.getpid(), *words)) + "\n")

    def prepare(self, rollout) -> None:
        self._write("prepare", rollout.challenger_version)

    def available(self, rollout, arm, version) -> bool:
        return True

    def set_weight(self, rollout, weight) -> None:
        self._write("set_weight", weight)

    def promote(self, rollout) -> None:
        self._write("promote", rollout.challenger_version)
        while self.hang_in_promote:  # the test kills this process here, mid-promotion
            time.sleep(0.1)


def main(url: str, rollout_id: str, actions: str, start_at: str, mode: str = "normal") -> None:
    registry = Registry.from_url(url)
    hang = mode == "hang-in-promote"
    controller = Controller(registry, actuator_factory=lambda target: FileActuator(actions, hang),
                            lease_ttl_s=1.0 if mode != "normal" else 30)
    while time.time() < float(start_at):
        time.sleep(0.005)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        controller.reconcile(int(rollout_id))
        time.sleep(0.05)
    registry.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
