"""The feedback runner and the lazy log store on their own: bounded slots that answer at once when
full, a circuit that opens after a failure, labels that wait briefly for their row, and a store
that never makes a caller wait behind someone else's connection attempt."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ingot.gateway.feedback_guard import FeedbackBusy, FeedbackForbidden, FeedbackRunner, check_labeller
from ingot.gateway.keys import FeedbackKeys
from ingot.gateway.logstore import LazyLogStore, LogUnavailable
from ingot.inference_log.feedback import RowNotLogged
from ingot.inference_log.records import FeedbackItem


class Unavailable(Exception):
    pass


def test_a_full_runner_answers_busy_at_once_and_a_failure_opens_the_circuit() -> None:
    async def scenario() -> None:
        runner = FeedbackRunner(workers=1, max_in_flight=1, open_after_failure_s=30)
        release = threading.Event()
        held = asyncio.ensure_future(runner.run(lambda: release.wait(10) and "held"))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(FeedbackBusy, match="already waiting"):
            await runner.run(lambda: "second")
        assert time.monotonic() - started < 0.5
        release.set()
        assert await held == "held" and runner.in_flight == 0

        def failing() -> None:
            raise Unavailable("database down")

        with pytest.raises(Unavailable):
            await runner.run(failing, unavailable=(Unavailable,))
        with pytest.raises(FeedbackBusy, match="database down"):
            await runner.run(lambda: "after")  # the circuit is open: not even tried
        runner.close()

    asyncio.run(scenario())


def test_a_label_waits_for_its_row_then_gives_up() -> None:
    async def scenario() -> None:
        runner = FeedbackRunner(label_wait_s=1.0)
        calls = []

        def written_on_third_try() -> str:
            calls.append(1)
            if len(calls) < 3:
                raise RowNotLogged("not yet")
            return "stored"

        assert await runner.run(written_on_third_try) == "stored" and len(calls) == 3

        def never() -> None:
            raise RowNotLogged("no such row")

        started = time.monotonic()
        with pytest.raises(RowNotLogged):
            await runner.run(never)
        assert 0.5 < time.monotonic() - started < 3
        runner.close()

    asyncio.run(scenario())


def test_keys_or_the_token_decide_who_may_label() -> None:
    keys = FeedbackKeys(b"k" * 32)
    mine = FeedbackItem("req-1", 0, "red", keys.key("req-1"))
    assert keys.key("req-1") != FeedbackKeys(b"j" * 32).key("req-1") and len(keys.key("req-1")) == 64
    check_labeller([mine], keys, token_required=False, token_ok=False)
    with pytest.raises(FeedbackForbidden, match="request 'req-2' row 0"):
        check_labeller([mine, FeedbackItem("req-2", 0, "red", keys.key("req-1"))], keys, token_required=False,
                       token_ok=False)
    with pytest.raises(FeedbackForbidden, match="only with its feedback token"):
        check_labeller([mine], keys, token_required=True, token_ok=False)
    check_labeller([FeedbackItem("req-3", 0, "red")], keys, token_required=True, token_ok=True)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        FeedbackKeys(b"short")


def test_the_log_store_tells_others_at_once_while_one_caller_connects(monkeypatch) -> None:
    import ingot.inference_log.store as store_module

    entered, release = threading.Event(), threading.Event()

    def slow_open(url, **kw):
        entered.set()
        release.wait(10)
        raise store_module.ConfigError("cannot open the inference log: timeout")

    monkeypatch.setattr(store_module.InferenceLogStore, "from_url", staticmethod(slow_open))
    lazy = LazyLogStore("postgresql://u@127.0.0.1:1/x", retry_after_s=30)
    failures: list[BaseException] = []

    def open_it() -> None:
        try:
            lazy.get()
        except store_module.ConfigError as err:
            failures.append(err)

    opener = threading.Thread(target=open_it)
    opener.start()
    assert entered.wait(5)
    started = time.monotonic()
    with pytest.raises(LogUnavailable, match="being connected to"):
        lazy.get()
    assert time.monotonic() - started < 0.5
    release.set()
    opener.join(5)
    assert len(failures) == 1 and not isinstance(failures[0], LogUnavailable)  # the opener saw the real error
    with pytest.raises(LogUnavailable, match="next attempt in"):  # the circuit after a failed open
        lazy.get()
    assert isinstance(LogUnavailable("x"), ConnectionError)  # the log writer retries it
