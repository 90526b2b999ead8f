"""The gateway's handle on the inference log's database: opened (and migrated) on first use, so
a gateway starts and serves while the database is still down.

Nothing waits behind a connection attempt: one caller opens, with no lock held, while every other
caller is told at once that the log is unavailable; a failed open shuts the circuit for
`retry_after_s` (those calls fail at once too), then the next call tries again. The log writer
treats LogUnavailable as a connection error and retries its batch; feedback answers 503.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ingot.errors import ConfigError


class LogUnavailable(ConfigError, ConnectionError):
    """The log's database cannot be used right now (being opened, or its last open failed)."""


class LazyLogStore:
    def __init__(self, url: str | None, *, timeouts: Any = None, feedback_busy_ms: int = 2000,
                 retry_after_s: float = 5.0) -> None:
        self._url = url
        self._timeouts = timeouts
        self._feedback_busy_ms = feedback_busy_ms
        self._retry_after_s = retry_after_s
        self._store: Any = None
        self._lock = threading.Lock()  # guards the fields below, never held while connecting
        self._opening = False
        self._retry_at = 0.0
        self._last_error = ""

    def get(self) -> Any:
        store = self._store
        if store is not None:
            return store
        with self._lock:
            if self._store is not None:
                return self._store
            if self._opening:
                raise LogUnavailable("the inference log's database is being connected to")
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise LogUnavailable(f"the inference log's database could not be opened ({self._last_error}); "
                                     f"next attempt in {wait:.1f} s")
            self._opening = True
        try:
            from ingot.inference_log.store import InferenceLogStore

            opened = InferenceLogStore.from_url(self._url, timeouts=self._timeouts,
                                                feedback_busy_ms=self._feedback_busy_ms)
        except Exception as err:
            with self._lock:
                self._opening = False
                self._retry_at = time.monotonic() + self._retry_after_s
                self._last_error = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise
        with self._lock:
            self._store, self._opening = opened, False
        return opened

    def write(self, records: Any) -> int:
        return int(self.get().write(records))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
