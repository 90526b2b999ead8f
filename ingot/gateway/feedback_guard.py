"""Who may label, and how feedback waits on the database without stalling anything else.

`check_labeller`: a label comes from the answer's recipient (the body gives back each answer's
`feedback_key`) or from a holder of the feedback token. When the routing table names a feedback
token file (as it must when a rollout or the drift monitor reads the log: a recipient could
otherwise label its own answers to move the evidence), only the token is accepted.

`FeedbackRunner`: feedback runs on its own small thread pool, never the event loop's default
executor (which would leave routing reloads and everything else queued behind a hung database),
with a bounded number in flight: when they are all taken, or the circuit is open after the
database failed, the answer is 503 at once. A label for a row the log has not written yet (rows
are written in batches off the request path) is retried for up to `label_wait_s` before 404.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ingot.gateway.keys import FeedbackKeys
from ingot.inference_log.feedback import RowNotLogged
from ingot.inference_log.records import FeedbackItem
from ingot.protocol.headers import FEEDBACK_KEY

T = TypeVar("T")
MAX_SHOWN = 3


class FeedbackForbidden(Exception):
    """Neither the answers' feedback keys nor the feedback token (HTTP 403)."""


class FeedbackBusy(Exception):
    """Feedback cannot be taken right now: all slots busy or the database failing (HTTP 503)."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def check_labeller(items: Sequence[FeedbackItem], keys: FeedbackKeys, *, token_required: bool,
                   token_ok: bool) -> None:
    """Raise FeedbackForbidden unless the token was given, or (when the gateway has no token)
    every item carries its answer's feedback key."""
    if token_ok:
        return
    if token_required:
        raise FeedbackForbidden(
            "this gateway takes labels only with its feedback token ('Authorization: Bearer <token>'): its "
            "inference log is evidence for a rollout or the drift monitor"
        )
    wrong = [item for item in items if not keys.matches(item.request_id, item.feedback_key)]
    if wrong:
        shown = ", ".join(f"request {item.request_id!r} row {item.row}" for item in wrong[:MAX_SHOWN])
        more = f" and {len(wrong) - MAX_SHOWN} more" if len(wrong) > MAX_SHOWN else ""
        raise FeedbackForbidden(
            f"a label needs the feedback_key its answer carried in {FEEDBACK_KEY} (or the gateway's feedback "
            f"token); missing or wrong for {shown}{more}"
        )


class FeedbackRunner:
    def __init__(self, *, workers: int = 4, max_in_flight: int = 16, label_wait_s: float = 2.0,
                 answer_timeout_s: float = 10.0, open_after_failure_s: float = 5.0) -> None:
        self.max_in_flight = max_in_flight
        self.label_wait_s = label_wait_s
        self.answer_timeout_s = answer_timeout_s
        self.open_after_failure_s = open_after_failure_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingot-feedback")
        self._in_flight = 0  # jobs submitted and not finished (a hung one keeps its slot)
        self._open_until = 0.0
        self._failure = ""

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def trip(self, reason: str) -> None:
        """Open the circuit: feedback answers 503 at once for `open_after_failure_s`."""
        self._open_until = time.monotonic() + self.open_after_failure_s
        self._failure = reason

    async def run(self, work: Callable[[], T], *, unavailable: tuple[type[BaseException], ...] = ()) -> T:
        """`work()` on the feedback pool. Raises FeedbackBusy at once when the pool is full or the
        circuit open; an `unavailable` error (or no answer within `answer_timeout_s`) opens it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.label_wait_s
        delay = 0.05
        while True:
            try:
                return await self._once(loop, work, unavailable)
            except RowNotLogged:
                if loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.4)

    async def _once(self, loop: asyncio.AbstractEventLoop, work: Callable[[], T],
                    unavailable: tuple[type[BaseException], ...]) -> T:
        wait = self._open_until - time.monotonic()
        if wait > 0:
            raise FeedbackBusy(f"the inference log is unavailable ({self._failure}); try again in {wait:.1f} s",
                               retry_after_s=wait)
        if self._in_flight >= self.max_in_flight:
            raise FeedbackBusy(f"{self._in_flight} feedback requests are already waiting on the inference log; "
                               "try again shortly")
        self._in_flight += 1
        future = loop.run_in_executor(self._executor, work)
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.answer_timeout_s)
        except TimeoutError:
            self.trip(f"no answer within {self.answer_timeout_s:g} s")
            raise FeedbackBusy(f"the inference log did not answer within {self.answer_timeout_s:g} s; try again "
                               "later", retry_after_s=self.open_after_failure_s) from None
        except unavailable as err:
            self.trip(str(err).splitlines()[0][:200] if str(err) else type(err).__name__)
            raise

    def _release(self, _future: Any) -> None:
        self._in_flight -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
