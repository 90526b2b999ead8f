"""The batch scheduler and processor with a fake model: merging, padding, splitting results
back, the bounded queue, timeouts, cancellation, draining, and isolating a bad request."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ingot.protocol.status import Code, ServingError
from ingot.serving.batching import QUEUE_FULL_MESSAGE, BatchProcessor, BatchScheduler
from ingot.serving.config import BatchingOptions


class FakeModel:
    """Doubles its input; records every batch it ran; can be held to let requests pile up."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_on = fail_on

    def __call__(self, inputs):
        self.entered.set()
        assert self.gate.wait(10), "test gate never opened"
        x = inputs["x"]
        self.batches.append(len(x))
        if self.fail_on is not None and (x == self.fail_on).any():
            raise ServingError(Code.INVALID_ARGUMENT, f"bad value {self.fail_on}")
        return {"y": x * 2, "n": np.full(len(x), len(x))}


def make(options: BatchingOptions, model: FakeModel):
    processor = BatchProcessor(model, options, is_data_error=lambda e: getattr(e, "code", None) == Code.INVALID_ARGUMENT)
    return BatchScheduler(options, processor, name="test"), processor


def hold_first_batch(scheduler, model):
    """Occupy the only batch thread so that following requests queue up."""
    model.gate.clear()
    first = scheduler.schedule({"x": np.array([100])}, 1)
    assert model.entered.wait(5)
    return first


def test_requests_of_different_sizes_are_merged_and_split_back():
    model = FakeModel()
    scheduler, _ = make(BatchingOptions(max_batch_size=16, num_batch_threads=1), model)
    try:
        first = hold_first_batch(scheduler, model)
        sizes = [1, 3, 2, 5]
        futures, start = [], 0
        for size in sizes:
            futures.append(scheduler.schedule({"x": np.arange(start, start + size)}, size))
            start += size
        model.gate.set()
        results = [f.result(5) for f in futures]
        assert first.result(5)["y"].tolist() == [200]
        start = 0
        for size, result in zip(sizes, results):
            assert result["y"].tolist() == [2 * v for v in range(start, start + size)]
            assert result["n"].tolist() == [11] * size  # all four ran in one batch of 11
            start += size
        assert model.batches == [1, 11]
    finally:
        scheduler.stop()


def test_batches_are_padded_to_allowed_sizes_and_padding_is_dropped():
    model = FakeModel()
    options = BatchingOptions(max_batch_size=8, allowed_batch_sizes=(2, 4, 8), num_batch_threads=1)
    scheduler, processor = make(options, model)
    try:
        first = hold_first_batch(scheduler, model)
        a = scheduler.schedule({"x": np.array([1, 2])}, 2)
        b = scheduler.schedule({"x": np.array([3])}, 1)
        model.gate.set()
        assert a.result(5)["y"].tolist() == [2, 4] and b.result(5)["y"].tolist() == [6]
        assert first.result(5)["y"].tolist() == [200]
        assert model.batches == [2, 4]  # 1 → 2, 3 → 4
        assert processor.executed_sizes == {2, 4}
    finally:
        scheduler.stop()


def test_a_full_queue_refuses_at_once_with_unavailable():
    model = FakeModel()
    options = BatchingOptions(max_batch_size=2, max_enqueued_batches=2, num_batch_threads=1)
    scheduler, _ = make(options, model)
    try:
        hold_first_batch(scheduler, model)
        queued = [scheduler.schedule({"x": np.array([i])}, 1) for i in range(4)]  # two batches of two
        assert scheduler.queued_batches == 2
        with pytest.raises(ServingError) as info:  # raised at once: the only batch thread is held
            scheduler.schedule({"x": np.array([9])}, 1)
        assert info.value.code == Code.UNAVAILABLE and info.value.message == QUEUE_FULL_MESSAGE
        assert scheduler.queued_tasks == 4  # bounded: nothing was added
        model.gate.set()
        assert [f.result(5)["y"].tolist() for f in queued] == [[0], [2], [4], [6]]
    finally:
        scheduler.stop()


def test_oversized_requests_are_refused_or_split():
    model = FakeModel()
    scheduler, _ = make(BatchingOptions(max_batch_size=4, num_batch_threads=1), model)
    try:
        with pytest.raises(ServingError, match="Task size 5 is larger than maximum input batch size 4"):
            scheduler.schedule({"x": np.arange(5)}, 5)
    finally:
        scheduler.stop()
    model = FakeModel()
    options = BatchingOptions(max_batch_size=10, enable_large_batch_splitting=True,
                              max_execution_batch_size=4, allowed_batch_sizes=(2, 4), num_batch_threads=1)
    scheduler, _ = make(options, model)
    try:
        result = scheduler.schedule({"x": np.arange(9)}, 9).result(5)
        assert result["y"].tolist() == [2 * v for v in range(9)]
        assert max(model.batches) <= 4 and sum(model.batches) >= 9
    finally:
        scheduler.stop()


def test_timeout_waits_for_more_requests_then_runs_a_partial_batch():
    model = FakeModel()
    scheduler, _ = make(BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1), model)
    try:
        started = time.monotonic()
        futures = [scheduler.schedule({"x": np.array([i])}, 1) for i in range(3)]
        assert [f.result(5)["y"].tolist() for f in futures] == [[0], [2], [4]]
        assert model.batches == [3]
        assert time.monotonic() - started >= 0.15  # it waited for the timeout, as configured
        full = [scheduler.schedule({"x": np.array([i])}, 1) for i in range(8)]
        for f in full:
            f.result(5)
        assert model.batches[-1] == 8
    finally:
        scheduler.stop()


def test_cancelled_requests_are_not_run():
    model = FakeModel()
    scheduler, _ = make(BatchingOptions(max_batch_size=8, num_batch_threads=1), model)
    try:
        hold_first_batch(scheduler, model)
        keep = scheduler.schedule({"x": np.array([1])}, 1)
        drop = scheduler.schedule({"x": np.array([2, 3])}, 2)
        assert drop.cancel()
        model.gate.set()
        assert keep.result(5)["y"].tolist() == [2]
        assert model.batches == [1, 1]
    finally:
        scheduler.stop()


def test_one_bad_request_fails_alone():
    model = FakeModel(fail_on=13)
    scheduler, _ = make(BatchingOptions(max_batch_size=8, num_batch_threads=1), model)
    try:
        hold_first_batch(scheduler, model)
        good = scheduler.schedule({"x": np.array([1, 2])}, 2)
        bad = scheduler.schedule({"x": np.array([13])}, 1)
        also_good = scheduler.schedule({"x": np.array([4])}, 1)
        model.gate.set()
        assert good.result(5)["y"].tolist() == [2, 4]
        assert also_good.result(5)["y"].tolist() == [8]
        with pytest.raises(ServingError, match="bad value 13"):
            bad.result(5)
    finally:
        scheduler.stop()


def test_requests_with_different_inner_shapes_go_to_separate_batches():
    model = FakeModel()
    scheduler, _ = make(BatchingOptions(max_batch_size=8, num_batch_threads=1), model)
    try:
        hold_first_batch(scheduler, model)
        a = scheduler.schedule({"x": np.zeros((1, 2))}, 1)
        b = scheduler.schedule({"x": np.zeros((1, 3))}, 1)
        model.gate.set()
        assert a.result(5)["y"].shape == (1, 2) and b.result(5)["y"].shape == (1, 3)
    finally:
        scheduler.stop()


def test_stop_drains_queued_work_and_refuses_new_work():
    model = FakeModel()
    scheduler, _ = make(BatchingOptions(max_batch_size=2, num_batch_threads=1), model)
    first = hold_first_batch(scheduler, model)
    queued = [scheduler.schedule({"x": np.array([i])}, 1) for i in range(3)]
    stopper = threading.Thread(target=scheduler.stop)
    stopper.start()
    time.sleep(0.05)
    with pytest.raises(ServingError) as info:
        scheduler.schedule({"x": np.array([1])}, 1)
    assert info.value.code == Code.UNAVAILABLE
    model.gate.set()
    stopper.join(5)
    assert first.result(1) and [f.result(1)["y"].tolist() for f in queued] == [[0], [2], [4]]


def test_model_failures_reach_every_caller_of_the_batch():
    def broken(inputs):
        raise ServingError(Code.INTERNAL, "model exploded")

    options = BatchingOptions(max_batch_size=4, num_batch_threads=1)
    scheduler = BatchScheduler(options, BatchProcessor(broken, options), name="broken")
    try:
        with pytest.raises(ServingError, match="model exploded"):
            scheduler.schedule({"x": np.array([1])}, 1).result(5)
    finally:
        scheduler.stop()
