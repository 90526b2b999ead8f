"""The routing table's poller, on a thread of its own: a reload (a rollback to weight 0 among
them) never waits behind work queued on the event loop's executor, such as requests stuck on a
hung database."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ingot.gateway.routing import RoutingTable, RoutingTableWatcher

log = logging.getLogger(__name__)


class RoutingPoller:
    def __init__(self, watcher: RoutingTableWatcher, interval_s: float,
                 on_change: Callable[[RoutingTable], Any]) -> None:
        self.watcher = watcher
        self.interval_s = interval_s
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingot-routing-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self.watcher.check():
                    self._on_change(self.watcher.table)
            except Exception:
                log.exception("routing table check failed")
