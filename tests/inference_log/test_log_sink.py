"""The bounded queue in front of the log: never blocks, drops and counts, retries, resumes, flushes."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence

import pytest
from sqlalchemy.exc import OperationalError

from ingot.inference_log.records import LogRecord
from ingot.inference_log.sink import JsonlWriter, QueueSink
from ingot.inference_log.store import InferenceLogStore
from tests.inference_log.conftest import record
from tests.support.postgres import throwaway_postgres


class FakeWriter:
    """Records what it was given; can be stalled (blocks) or down (raises a connection error)."""

    def __init__(self) -> None:
        self.rows: list[LogRecord] = []
        self.down = False
        self.reject = False
        self.stall = threading.Event()
        self.stall.set()
        self.calls = 0

    def write(self, records: Sequence[LogRecord]) -> int:
        self.calls += 1
        self.stall.wait()
        if self.down:
            raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
        if self.reject:
            raise ValueError("value too long for type character varying(64)")
        self.rows.extend(records)
        return len(records)


def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_records_are_written_in_batches_and_flushed_on_close() -> None:
    writer = FakeWriter()
    sink = QueueSink(writer, batch_size=50)
    for i in range(20):
        sink.submit([record(f"r{i}", row) for row in range(10)])
    sink.close()
    assert len(writer.rows) == 200 == sink.stats.written
    assert writer.calls <= 200 // 10  # batched, not one write per request
    assert sink.stats.dropped == 0


def test_a_stalled_writer_never_blocks_submit_and_the_queue_is_bounded(caplog) -> None:
    writer = FakeWriter()
    writer.stall.clear()
    sink = QueueSink(writer, max_queue=100, batch_size=10, warn_every_s=3600)
    with caplog.at_level(logging.WARNING, logger="ingot.inference_log.sink"):
        sink.submit([record("first")])
        wait_for(lambda: writer.calls == 1)  # the writer holds one record and is stuck
        for i in range(1000):
            sink.submit([record(f"r{i}")])
    assert sink.queued == 100
    assert sink.stats.dropped_queue_full == 900
    warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: one line, not 900
    writer.stall.set()
    sink.close()
    assert len(writer.rows) == 101 and sink.stats.written == 101


def test_a_down_writer_is_retried_and_writing_resumes_when_it_is_back() -> None:
    writer = FakeWriter()
    writer.down = True
    sink = QueueSink(writer, max_queue=50, batch_size=10, retry_initial_s=0.01, retry_max_s=0.05)
    sink.submit([record(f"r{i}") for i in range(30)])
    wait_for(lambda: writer.calls >= 3)
    assert sink.stats.written == 0 and sink.stats.write_errors >= 3
    sink.submit([record(f"more{i}") for i in range(100)])  # beyond the bound: dropped, counted
    assert sink.stats.dropped_queue_full > 0
    writer.down = False
    wait_for(lambda: sink.queued == 0 and sink.stats.written > 0)
    sink.close()
    assert sink.stats.written + sink.stats.dropped == 130
    assert len(writer.rows) == sink.stats.written


def test_a_batch_rejected_for_its_content_is_dropped_not_retried_forever() -> None:
    writer = FakeWriter()
    writer.reject = True
    sink = QueueSink(writer, batch_size=10)
    sink.submit([record(f"r{i}") for i in range(10)])
    wait_for(lambda: sink.stats.dropped_rejected == 10)
    writer.reject = False
    sink.submit([record("ok")])
    sink.close()
    assert [r.request_id for r in writer.rows] == ["ok"]


def test_close_gives_up_on_a_down_writer_within_its_deadline() -> None:
    writer = FakeWriter()
    writer.down = True
    sink = QueueSink(writer, retry_initial_s=0.05, retry_max_s=0.05)
    sink.submit([record(f"r{i}") for i in range(5)])
    started = time.monotonic()
    sink.close(timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert sink.stats.dropped == 5 and sink.stats.written == 0
    sink.submit([record("after")])  # after close: counted, never queued
    assert sink.stats.dropped_queue_full == 1


def test_the_jsonl_writer_appends_one_line_per_row(tmp_path) -> None:
    writer = JsonlWriter(tmp_path / "log" / "inference.jsonl")
    sink = QueueSink(writer)
    sink.submit([record("r1", 0), record("r1", 1, predicted=None, status="INVALID_ARGUMENT")])
    sink.close()
    writer.close()
    lines = [json.loads(line) for line in (tmp_path / "log" / "inference.jsonl").read_text().splitlines()]
    assert [(line["row"], line["status"], line["predicted_class_id"]) for line in lines] == [
        (0, "OK", 3), (1, "INVALID_ARGUMENT", None)]
    assert lines[0]["ts"] == "2026-11-29T12:00:00+00:00"


@pytest.mark.postgres
@pytest.mark.xdist_group("log-postgres")
def test_postgres_killed_mid_stream_drops_are_counted_and_logging_resumes_after_restart() -> None:
    # durable: with asynchronous commit a crash would also lose acknowledged writes
    with throwaway_postgres(durable=True) as server:
        url = server.create_database("log_crash")
        store = InferenceLogStore.from_url(url)
        sink = QueueSink(store, max_queue=200, batch_size=20, retry_initial_s=0.05, retry_max_s=0.2)
        submitted = 0

        def stream(prefix: str, count: int) -> None:
            nonlocal submitted
            for i in range(count):
                sink.submit([record(f"{prefix}-{i}")])  # never raises, never blocks
                submitted += 1

        stream("before", 100)
        wait_for(lambda: sink.stats.written == 100)
        server.crash()
        stream("during", 1000)  # the database is gone: the queue fills, the rest is dropped
        wait_for(lambda: sink.stats.write_errors > 0)
        assert sink.stats.dropped_queue_full >= 1000 - 200 - 20
        server.restart()
        wait_for(lambda: sink.queued == 0)
        stream("after", 100)
        sink.close()
        assert sink.stats.written + sink.stats.dropped == submitted == 1200
        assert store.count() == sink.stats.written
        assert sum(1 for row in store.rows() if row["request_id"].startswith("after-")) == 100
        store.close()
