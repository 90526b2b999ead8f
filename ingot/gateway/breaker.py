"""A circuit breaker per upstream (or per Redis): stop asking something that keeps failing.

Closed: calls pass; `failures` consecutive failures open it. Open: calls are refused for
`open_s` seconds. Half-open: one probe passes; its success closes the breaker, its failure opens
it again. Envoy/Istio eject an upstream after 5 consecutive 5xx, hence the default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass
class Breaker:
    failures: int = 5
    open_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _consecutive: int = 0
    _opened_at: float | None = None
    _probing: bool = False
    opened: int = field(default=0)  # times it opened, for metrics

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._probing or self.clock() - self._opened_at >= self.open_s:
            return HALF_OPEN
        return OPEN

    def allow(self) -> bool:
        """Whether a call may go out now (in half-open, only one probe at a time)."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        self._consecutive += 1
        if self._probing or self._consecutive >= self.failures:
            if self._opened_at is None or self._probing:
                self.opened += 1
            self._opened_at = self.clock()
            self._probing = False
