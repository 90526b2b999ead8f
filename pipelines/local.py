"""Run a pipeline with kfp's local runner (SubprocessRunner, no containers) and keep its noise out
of the way: every log line and each step's output go to a log file, while the caller gets one
progress line per step, the step timings, and on failure the step's own error message.

What kfp hands back as data is read as data: the pipeline's outputs (the returned task), the run's
directory under the pipeline root and each task's `executor_output.json` in it. kfp 2.17 has no
structured per-task events, so progress and timings come from the lines its runner logs
(`Executing task`, `finished with status`, cache hits, retries); tests/pipelines/
test_pipeline_local_contract.py runs a real pipeline and fails if that wording or layout changes.
"""

import contextlib
import io
import json
import logging
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ingot.errors import IngotError

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_CACHED = re.compile(r"Task '?([^' ]+)'? cache hit")
_RETRYING = re.compile(r"Task '?([^' ]+)'? failed \(attempt (\d+)/(\d+)\)\. Retrying in ([\d.]+)s")
# The last line of a Python traceback: "ingot.errors.DataError: ..." or "ValueError: ...".
_EXCEPTION = re.compile(r"^\s*((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception)): (.+)$")


class PipelineRunError(IngotError):
    """A local pipeline run failed; the message names the step and its error."""


@dataclass
class StepTiming:
    name: str
    started: float
    finished: float | None = None
    status: str = "RUNNING"

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


@dataclass
class LocalRun:
    output: Any
    steps: list[StepTiming]
    seconds: float
    log_path: Path
    run_dir: Path | None
    cached: list[str] = field(default_factory=list)


class _StepLog(io.TextIOBase):
    """A text stream that copies everything to the log file and turns the local runner's task
    start/finish lines into step timings and one progress line per step."""

    def __init__(self, log: TextIO, progress: Callable[[str], None] | None) -> None:
        self._log = log
        self._progress = progress
        self._pending = ""
        self.steps: dict[str, StepTiming] = {}
        self.cached: list[str] = []
        self.lines: list[str] = []  # de-coloured, for error extraction

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._log.write(text)
        self._pending += text
        *complete, self._pending = self._pending.split("\n")
        for line in complete:
            self._line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self._log.flush()

    def _line(self, line: str) -> None:
        self.lines.append(line)
        now = time.perf_counter()
        if match := _STARTED.search(line):
            self.steps[match.group(1)] = StepTiming(match.group(1), started=now)
        elif match := _FINISHED.search(line):
            step = self.steps.setdefault(match.group(1), StepTiming(match.group(1), started=now))
            step.finished, step.status = now, match.group(2)
            if self._progress:
                self._progress(f"  {step.name:<10} {step.status.lower():<8} {step.seconds:6.1f} s")
        elif match := _RETRYING.search(line):
            if self._progress:
                name, attempt, attempts, delay = match.groups()
                self._progress(f"  {name:<10} retrying in {float(delay):.0f} s (attempt {attempt} of {attempts} failed)")
        elif match := _CACHED.search(line):
            self.cached.append(match.group(1))
            if self._progress:
                self._progress(f"  {match.group(1):<10} cached (outputs of an earlier identical run reused)")

    def error_of(self, step: str) -> str | None:
        """The last exception line printed while `step` ran."""
        inside, found = False, None
        for line in self.lines:
            if (match := _STARTED.search(line)) is not None:
                inside = match.group(1) == step
            elif inside and (match := _EXCEPTION.match(line)) is not None:
                found = f"{match.group(1).rsplit('.', 1)[-1]}: {match.group(2).strip()}"
        return found


def run_locally(
    pipeline: Any,
    arguments: dict[str, Any],
    *,
    pipeline_root: Path,
    log_path: Path,
    progress: Callable[[str], None] | None = None,
    enable_caching: bool = False,
) -> LocalRun:
    """Run `pipeline(**arguments)` with kfp's SubprocessRunner in this Python environment.

    Steps run one after another as subprocesses of this interpreter; outputs land under
    `pipeline_root/<pipeline name>-<timestamp>/<step>/`. Raises PipelineRunError naming the
    failed step and the error it raised.
    """
    from kfp import local

    pipeline_root = Path(pipeline_root).resolve()
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    workspace = pipeline_root / ".workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        workspace_root=str(workspace),
        raise_on_error=True,
        enable_caching=enable_caching,
    )
    earlier = run_dirs(pipeline_root)
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        stream = _StepLog(log, progress)
        failure: BaseException | None = None
        # The runner logs cache hits outside its own logging context: catch those here.
        root_logger = logging.getLogger()
        handler, level = logging.StreamHandler(stream), root_logger.level
        root_logger.addHandler(handler)
        root_logger.setLevel(logging.INFO)
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream), warnings.catch_warnings():
            # The runner warns that resource requests and accelerators do nothing locally, and
            # that our image name is not a python image: both expected here.
            warnings.simplefilter("ignore")
            try:
                task = pipeline(**arguments)
            except Exception as err:  # noqa: BLE001 - turned into one readable error below
                failure = err
            finally:
                root_logger.removeHandler(handler)
                root_logger.setLevel(level)
        stream.flush()
    seconds = time.perf_counter() - started
    if failure is not None:
        failed = [s.name for s in stream.steps.values() if s.status == "FAILURE"]
        if failed:
            detail = stream.error_of(failed[-1]) or "see the log"
            message = f"step {failed[-1]!r} failed: {detail}"
        else:
            message = f"the pipeline did not run: {str(failure).strip().splitlines()[-1] if str(failure).strip() else type(failure).__name__}"
        raise PipelineRunError(f"{message} (full log: {log_path})") from failure
    new = sorted(set(run_dirs(pipeline_root)) - set(earlier))
    return LocalRun(
        output=_output_of(task), steps=list(stream.steps.values()), seconds=seconds, log_path=log_path,
        run_dir=new[-1] if len(new) == 1 else None, cached=stream.cached,
    )


EXECUTOR_OUTPUT = "executor_output.json"  # what kfp's runner writes in each task's folder


def run_dirs(pipeline_root: Path) -> list[Path]:
    """The run folders kfp's local runner made under `pipeline_root`
    (`<pipeline name>-<timestamp>/<task>/executor_output.json`)."""
    if not pipeline_root.is_dir():
        return []
    return [path for path in pipeline_root.iterdir()
            if path.is_dir() and any(task.is_dir() and (task / EXECUTOR_OUTPUT).is_file() for task in path.iterdir())]


def executor_outputs(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Each finished task's executor output (its parameter values and artifacts), by task name."""
    return {task.name: json.loads((task / EXECUTOR_OUTPUT).read_text(encoding="utf-8"))
            for task in sorted(run_dir.iterdir()) if (task / EXECUTOR_OUTPUT).is_file()}


def _output_of(task: Any) -> Any:
    outputs = getattr(task, "outputs", None) or {}
    if len(outputs) == 1:
        value = next(iter(outputs.values()))
    else:
        value = outputs or None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value
