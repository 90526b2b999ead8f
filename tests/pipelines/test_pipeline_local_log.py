"""The local runner's log stream: step timings, progress lines (including cache hits and train
retries) and the failed step's own error, from the lines kfp's local runner prints."""

from __future__ import annotations

import io

from pipelines.local import _StepLog

COLOURED = "\x1b[96m'{}'\x1b[0m"


def _feed(stream: _StepLog, *lines: str) -> None:
    for line in lines:  # in uneven pieces, as a subprocess's output arrives
        half = len(line) // 2
        stream.write(line[:half])
        stream.write(line[half:] + "\n")


def test_progress_timings_cache_hits_and_retries():
    progress: list[str] = []
    log = io.StringIO()
    stream = _StepLog(log, progress.append)
    _feed(
        stream,
        "10:00:00.000 - INFO - Task ingest cache hit (key=0123456789ab); skipping execution.",
        f"10:00:00.001 - INFO - Executing task {COLOURED.format('train')}",
        f"10:00:01.000 - INFO - Task {COLOURED.format('train')} finished with status \x1b[91mFAILURE\x1b[0m",
        "10:00:01.001 - INFO - Task train failed (attempt 1/3). Retrying in 2.0s...",
        f"10:00:03.001 - INFO - Executing task {COLOURED.format('train')}",
        f"10:00:09.000 - INFO - Task {COLOURED.format('train')} finished with status \x1b[92mSUCCESS\x1b[0m",
    )
    assert stream.cached == ["ingest"]
    assert stream.steps["train"].status == "SUCCESS" and stream.steps["train"].seconds >= 0
    assert [line.split()[:2] for line in progress] == [
        ["ingest", "cached"], ["train", "failure"], ["train", "retrying"], ["train", "success"]
    ]
    assert "attempt 1 of 3 failed" in progress[2]
    assert "\x1b[96m" in log.getvalue()  # the log file keeps everything as printed


def test_error_of_returns_the_failed_steps_last_exception_line():
    stream = _StepLog(io.StringIO(), None)
    _feed(
        stream,
        f"INFO - Executing task {COLOURED.format('ingest')}",
        "    ValueError: an earlier, handled problem in another step",
        f"INFO - Executing task {COLOURED.format('train')}",
        "    Traceback (most recent call last):",
        '      File "x.py", line 1, in <module>',
        "    ingot.errors.DataError: training needs non-empty train and validation splits",
        f"INFO - Task {COLOURED.format('train')} finished with status FAILURE",
    )
    assert stream.error_of("train") == "DataError: training needs non-empty train and validation splits"
    assert stream.error_of("ingest") == "ValueError: an earlier, handled problem in another step"
    assert stream.error_of("evaluate") is None
