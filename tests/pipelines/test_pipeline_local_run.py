"""ingot-retrain end to end through kfp's local runner and `ingot pipeline run`, on tiny data.

The first run's gate floor rejects (the twin classes cannot be told apart): nothing is published
and the rejection is registered with its reasons. The second run, with the same data and recipe
and `--cache`, reuses build-data (no production policy: nothing built), ingest and train, and a
floor of 0 blesses: the model is published, registered READY and becomes champion. Every step is a subprocess importing TensorFlow, so the
two runs share one module-scoped fixture on one xdist worker.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from ingot import repository
from ingot.cli.main import main
from ingot.registry import Registry, Stage, Status
from tests.components.tiny import BLESSING, CLASSES, RECIPE, REJECTING, TWINS, write_image_folder

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline-local-runs")]


def _gate_flags(thresholds):
    return ["--min-accuracy", str(thresholds["min_accuracy"]), "--min-class-f1", str(thresholds["min_class_f1"]),
            "--max-regression", str(thresholds["max_regression"])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run the pipeline twice (reject, then bless) and keep each run's exit code and output."""
    base = tmp_path_factory.mktemp("pipeline-e2e")
    folder = write_image_folder(base / "images")
    recipe = base / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    common = ["pipeline", "run", "--dataset", str(folder), "--model-name", "tiny", "--config", str(recipe),
              "--model-repository", str(base / "repo"), "--registry", f"sqlite:///{base / 'registry.db'}",
              "--pipeline-root", str(base / "root"), "--cache"]
    results = {}
    for label, thresholds in (("rejected", REJECTING), ("blessed", BLESSING)):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*common, *_gate_flags(thresholds), "--require-blessing"])
        results[label] = {"code": code, "out": out.getvalue(), "err": err.getvalue(),
                          "versions": repository.list_versions(str(base / "repo"), "tiny")}
    results["base"] = base
    return results


def _registry(runs) -> Registry:
    return Registry.from_url(f"sqlite:///{runs['base'] / 'registry.db'}")


def _run_dir(runs, label) -> Path:
    line = next(line for line in runs[label]["out"].splitlines() if line.startswith("details: "))
    return Path(line.rsplit("step outputs: ", 1)[1])


def test_a_class_below_its_floor_is_rejected_registered_and_not_published(runs):
    run = runs["rejected"]
    assert run["code"] == 3, run["err"]  # --require-blessing: a rejection is a distinct exit status
    out = run["out"]
    for step in ("ingest", "train", "evaluate", "reject"):
        assert f"  {step:<10} success" in out  # one progress line per step, nothing else from the runner
    assert "Executing task" not in out and "KFP Executor" not in out
    assert "== Gate decision\nREJECTED:" in out
    assert "nothing published (rejected)" in out
    assert run["versions"] == []  # the repository right after this run

    with _registry(runs) as registry:
        (record,) = [r for r in registry.list_versions("tiny") if r.is_rejection]
        assert (record.stage, record.status, record.version) == (Stage.REJECTED, Status.FAILED, None)
        assert any(f"class '{twin}' F1" in reason and "below the floor 0.9500" in reason
                   for twin in TWINS for reason in record.reasons)
        assert record.pipeline_run_id and record.data_hash and record.config["image_size"] == [20, 20]
        assert f"tiny (rejection #{record.id})  record #{record.id}  stage rejected  status FAILED" in out


def test_the_blessed_run_reuses_ingest_and_train_then_publishes_and_registers_a_champion(runs):
    run = runs["blessed"]
    assert run["code"] == 0, run["err"]
    out = run["out"]
    assert "cached: build-data, ingest, train" in out  # build-data without production: its note, reused
    for step in ("evaluate", "publish", "register"):
        assert f"  {step:<10} success" in out
    assert "== Gate decision\nBLESSED: all" in out

    repo = runs["base"] / "repo"
    assert run["versions"] == [1]
    path = repository.version_path(str(repo), "tiny", 1)
    assert repository.verify_manifest(path)
    assert f"published: tiny version 1 at {path}" in out

    with _registry(runs) as registry:
        champion = registry.champion("tiny")
        assert (champion.version, champion.status, champion.stage) == (1, Status.READY, Stage.CHAMPION)
        assert champion.artifact_uri == path
        assert champion.model_sha256 == repository.version_model_sha256(path)
        card = repository.read_model_card(path)
        assert champion.pipeline_run_id == card["pipeline_run_id"] and champion.pipeline_run_id
        assert champion.data_hash == card["data_hash"]
        rejection = next(r for r in registry.list_versions("tiny") if r.is_rejection)
        assert champion.data_hash == rejection.data_hash  # same data, cached ingest
        assert champion.pipeline_run_id != rejection.pipeline_run_id
        assert len(registry.list_versions("tiny")) == 2
    assert "tiny:1  record #" in out and "stage champion  status READY; champion is tiny:1" in out
    assert "(new) -> champion: first blessed READY version of tiny" in out


def test_the_report_ends_with_the_per_class_table(runs):
    out = runs["blessed"]["out"]
    table = out.split("== Per-class metrics (held-out test split)\n", 1)[1].split("\n\n", 1)[0]
    rows = {line.split()[0] for line in table.splitlines()[2:]}
    assert set(CLASSES) <= rows and {"accuracy", "ECE"} <= rows


def test_step_outputs_hold_what_the_kubeflow_ui_renders(runs):
    run_dir = _run_dir(runs, "rejected")
    assert run_dir.is_dir() and run_dir.parent == runs["base"] / "root"
    # Sample grid (9) plus one image per plot: class counts and intensity histograms.
    assert (run_dir / "ingest" / "data_report").read_text().count('src="data:image/png;base64,') == 9 + 2
    assert (run_dir / "train" / "training_curves").read_text().count('<figure class="plot"') == 1
    evaluation = (run_dir / "evaluate" / "evaluation_report").read_text()
    assert "<h2>tiny: REJECTED</h2>" in evaluation
    assert 'id="plot-confusion-matrix"' in evaluation and 'id="plot-per-class"' in evaluation
    executor_output = json.loads((run_dir / "evaluate" / "executor_output.json").read_text())
    artifacts = executor_output["artifacts"]
    matrix = artifacts["confusion_matrix"]["artifacts"][0]["metadata"]["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == CLASSES
    assert "accuracy" in artifacts["metrics"]["artifacts"][0]["metadata"]
    assert executor_output["parameterValues"]["blessed"] is False
    serving = run_dir / "evaluate" / "serving_model"  # declared outputs exist even when rejected
    assert serving.is_dir() and not any(serving.iterdir())


def test_a_failing_step_is_reported_as_one_line_naming_the_step_and_its_error(tmp_path):
    """A recipe key the ingest step refuses (passed straight to the pipeline, as a Kubeflow UI
    user could): the run stops there and says why, without a traceback."""
    from pipelines.local import PipelineRunError, run_locally
    from pipelines.retrain import build_pipeline

    progress: list[str] = []
    with pytest.raises(PipelineRunError) as failure:
        run_locally(build_pipeline(), {"recipe": {"epochz": 3}, "registry_url": f"sqlite:///{tmp_path / 'r.db'}"},
                    pipeline_root=tmp_path / "root", log_path=tmp_path / "run.log", progress=progress.append)
    message = str(failure.value)
    assert message.startswith("step 'ingest' failed: ConfigError: unknown config key 'epochz'")
    assert f"(full log: {tmp_path / 'run.log'})" in message and "\n" not in message
    # build-data (no production policy) reads nothing and succeeds; ingest is the step that refuses.
    assert progress[0].startswith(f"  {'build-data':<10} success")
    assert progress[1:] == [f"  {'ingest':<10} failure  " + progress[1].rsplit("failure  ", 1)[1]]
    assert "Traceback" in (tmp_path / "run.log").read_text()
