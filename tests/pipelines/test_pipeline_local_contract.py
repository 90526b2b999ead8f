"""What `pipelines.local` relies on in kfp's local runner, checked against the installed kfp with
a real two-step pipeline: the log wording progress and timings are read from (task start, finish
and status, cache hits, a failed task's exception line) and the structured outputs read as data
(the returned task's outputs, the run folder with each task's executor_output.json). A kfp
upgrade that changes any of them fails here, by name, rather than leaving `make retrain` silent."""

import pytest  # no `from __future__ import annotations`: kfp reads the components' real annotations

from pipelines.local import EXECUTOR_OUTPUT, PipelineRunError, executor_outputs, run_dirs, run_locally


def _pipeline(fail: bool = False):
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def first(value: int) -> int:
        return value + 1

    @dsl.component(base_image="python:3.11")
    def second(value: int, fail: bool) -> str:
        if fail:
            raise ValueError(f"refusing {value}")
        import json

        return json.dumps({"id": value})

    @dsl.pipeline(name="contract")
    def contract(value: int = 1) -> str:
        task = second(value=first(value=value).output, fail=fail)
        return task.output

    return contract


def test_kfp_local_runner_reports_what_pipelines_local_reads(tmp_path):
    progress: list[str] = []
    root = tmp_path / "root"
    result = run_locally(_pipeline(), {"value": 41}, pipeline_root=root, log_path=tmp_path / "run.log",
                         progress=progress.append)
    assert result.output == {"id": 42}, "the pipeline's output no longer comes back on the returned task"
    steps = {step.name: step for step in result.steps}
    assert list(steps) == ["first", "second"], (
        f"kfp's 'Executing task' / 'finished with status' lines changed; saw steps {list(steps)}; "
        f"log:\n{(tmp_path / 'run.log').read_text()[-2000:]}")
    assert all(step.status == "SUCCESS" and step.seconds is not None for step in steps.values())
    assert [line.split()[:2] for line in progress] == [["first", "success"], ["second", "success"]]
    assert result.run_dir is not None and result.run_dir.parent == root.resolve(), (
        f"kfp's run folder layout changed: {sorted(p.name for p in root.iterdir())}")
    assert result.run_dir.name.startswith("contract-")
    outputs = executor_outputs(result.run_dir)
    assert set(outputs) == {"first", "second"}, f"no {EXECUTOR_OUTPUT} per task in {result.run_dir}"
    assert outputs["first"]["parameterValues"]["Output"] == 42

    cached = run_locally(_pipeline(), {"value": 41}, pipeline_root=root, log_path=tmp_path / "cached.log",
                         enable_caching=True)
    again = run_locally(_pipeline(), {"value": 41}, pipeline_root=root, log_path=tmp_path / "again.log",
                        enable_caching=True)
    assert cached.cached == [] and sorted(again.cached) == ["first", "second"], (
        f"kfp's cache-hit line changed; log:\n{(tmp_path / 'again.log').read_text()[-2000:]}")
    assert again.output == {"id": 42}
    assert len(run_dirs(root)) >= 2


def test_a_failed_task_is_named_with_its_own_error(tmp_path):
    with pytest.raises(PipelineRunError) as caught:
        run_locally(_pipeline(fail=True), {"value": 1}, pipeline_root=tmp_path / "root",
                    log_path=tmp_path / "run.log")
    assert "step 'second' failed: ValueError: refusing 2" in str(caught.value), (
        f"kfp's task failure wording or traceback printing changed: {caught.value}")
