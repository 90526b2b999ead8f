"""`ingot pipeline compile|run`: help everywhere, one-line errors, compile to a path, and
submission to a Kubeflow Pipelines endpoint (a loopback server answering like the KFP API)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import yaml

from ingot.cli.main import main
from tests.components.tiny import RECIPE
from tests.pipelines.kfp_api import fake_kfp_api


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


@pytest.mark.parametrize("argv", [["pipeline", "--help"], ["pipeline", "run", "--help"], ["pipeline", "compile", "--help"]])
def test_help_on_every_command(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: ingot pipeline" in capsys.readouterr().out


def test_help_does_not_import_kfp_or_tensorflow():
    code = ("import sys; from ingot.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('kfp', 'tensorflow', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_compile_writes_the_ir_yaml_to_the_given_path(tmp_path, capsys):
    target = tmp_path / "out" / "retrain.yaml"
    assert main(["pipeline", "compile", "-o", str(target), "--image", "example.org/ingot:7"]) == 0
    assert f"compiled ingot-retrain to {target}" in capsys.readouterr().out
    spec = next(yaml.safe_load_all(target.read_text()))
    assert spec["pipelineInfo"]["name"] == "ingot-retrain"
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {"example.org/ingot:7"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "epochz=3"], "unknown"),
        (["--model-name", "Bad/Name"], "--model-name: model name 'Bad/Name' is not valid"),
        (["--min-class-f1", "1.5"], "min_class_f1=1.5 is out of range"),
        (["--dataset", "/no/such/images"], "--dataset /no/such/images does not exist"),
        (["--registry", "mysql://db/x"], "registry URL scheme 'mysql' is not supported"),
        (["--host", "localhost:8080"], "is not an http(s) URL"),
        (["--experiment", "x", "--accelerator-limit", "2"], "--experiment, --accelerator-limit: only with --host URL"),
        (["--host", "http://kfp:8888", "--cache"], "--cache: only for local runs, not with --host"),
    ],
)
def test_bad_input_is_one_readable_line_and_a_nonzero_exit(extra, message, recipe_file, tmp_path, capsys):
    local = [] if "--host" in extra else ["--pipeline-root", str(tmp_path)]
    code = main(["pipeline", "run", "--config", str(recipe_file), *local, *extra])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("ingot: error: ") and message in err
    assert err.count("\n") == 1  # one line, no traceback
    assert not list(tmp_path.glob("ingot-retrain-*"))  # nothing ran


def test_compile_refuses_a_directory_as_output(tmp_path, capsys):
    assert main(["pipeline", "compile", "-o", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err


def test_host_submits_the_pipeline_and_prints_the_run_url(recipe_file, capsys):
    with fake_kfp_api() as kfp_api:
        code = main([
            "pipeline", "run", "--host", kfp_api.url + "/", "--config", str(recipe_file), "--model-name", "tiny",
            "--dataset", "gs://bucket/tiny", "--min-class-f1", "0.8", "--experiment", "ingot-nightly",
            "--run-name", "nightly tiny", "--accelerator-limit", "2", "--image", "example.org/ingot:7",
            "--worker-accelerator-limit", "4",
        ])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[:2] == [
        f"submitted run {kfp_api.run_id} ('nightly tiny') to {kfp_api.url}",
        f"run URL: {kfp_api.url}/#/runs/details/{kfp_api.run_id}",
    ]
    assert out.splitlines()[2].startswith("note: without --model-repository the steps read")
    (run,) = kfp_api.runs()
    assert run["display_name"] == "nightly tiny"
    assert run["experiment_id"] == kfp_api.experiments["ingot-nightly"]  # created on first use
    spec = run["pipeline_spec"]
    assert spec["pipeline_spec"]["pipelineInfo"]["name"] == "ingot-retrain"
    images = {e["container"]["image"] for e in spec["pipeline_spec"]["deploymentSpec"]["executors"].values()}
    assert images == {"example.org/ingot:7"}
    assert "kubernetes" in spec["platform_spec"]["platforms"]
    parameters = run["runtime_config"]["parameters"]
    assert parameters["dataset_uri"] == "gs://bucket/tiny" and parameters["model_name"] == "tiny"
    assert parameters["min_class_f1"] == 0.8 and parameters["accelerator_limit"] == 2
    assert parameters["worker_accelerator_limit"] == 4  # per TFJob worker, for recipes with workers > 1
    assert parameters["recipe"]["image_size"] == [20, 20] and parameters["recipe"]["epochs"] == RECIPE["epochs"]
    # Where models live is the cluster's setting unless given; the registry URL never is a parameter.
    assert "model_repository" not in parameters and "registry_url" not in parameters
    assert "registry_secret" not in parameters  # the pipeline's default Secret


def test_host_reuses_an_existing_experiment(recipe_file, capsys, monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_SA_TOKEN_PATH", raising=False)
    with fake_kfp_api() as kfp_api:
        assert main(["pipeline", "run", "--host", kfp_api.url, "--config", str(recipe_file),
                     "--model-repository", "gs://models", "--registry-secret", "team-registry"]) == 0
    (run,) = kfp_api.runs()
    assert run["experiment_id"] == "exp-default"
    assert set(kfp_api.authorization) == {None} and "service_account" not in run
    assert not [r for r in kfp_api.requests if r[:2] == ("POST", "/apis/v2beta1/experiments")]
    assert run["runtime_config"]["parameters"]["model_repository"] == "gs://models"
    # Contract change (issue: secrets never in run parameters): a Secret's name, not the URL.
    assert run["runtime_config"]["parameters"]["registry_secret"] == "team-registry"
    assert "registry_url" not in run["runtime_config"]["parameters"]
    out = capsys.readouterr().out
    assert "/#/runs/details/" in out and "note:" not in out


def test_host_authenticates_with_a_mounted_service_account_token(recipe_file, tmp_path, monkeypatch):
    """As the retrain CronJob submits: a projected token file and a service account for the run."""
    token = tmp_path / "token"
    token.write_text("projected-token-abc\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with fake_kfp_api() as kfp_api:
        assert main(["pipeline", "run", "--host", kfp_api.url, "--config", str(recipe_file),
                     "--service-account", "ingot-pipeline", "--experiment", "ingot-retrain"]) == 0
    assert kfp_api.authorization and set(kfp_api.authorization) == {"Bearer projected-token-abc"}
    (run,) = kfp_api.runs()
    assert run["service_account"] == "ingot-pipeline"


def test_host_errors_are_one_line(recipe_file, capsys):
    with fake_kfp_api() as kfp_api:
        kfp_api.fail_runs_with = 400
        assert main(["pipeline", "run", "--host", kfp_api.url, "--config", str(recipe_file)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ingot: error: submitting to {kfp_api.url} failed: HTTP 400")
    assert "pipeline spec rejected" in err and err.count("\n") == 1

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    assert main(["pipeline", "run", "--host", closed, "--config", str(recipe_file)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ingot: error: submitting to {closed} failed: cannot connect: ") and err.count("\n") == 1


def test_host_passes_the_int8_tolerance_and_refuses_a_bad_one(recipe_file, capsys):
    with fake_kfp_api() as kfp_api:
        assert main(["pipeline", "run", "--host", kfp_api.url, "--config", str(recipe_file),
                     "--int8-max-loss", "0.02"]) == 0
        (run,) = kfp_api.runs()
        assert run["runtime_config"]["parameters"]["int8_max_loss"] == 0.02
        capsys.readouterr()
        assert main(["pipeline", "run", "--host", kfp_api.url, "--config", str(recipe_file),
                     "--int8-max-loss", "1.5"]) == 1
        assert len(kfp_api.runs()) == 1  # nothing submitted
    err = capsys.readouterr().err
    assert err.startswith("ingot: error: ") and "int8_max_loss" in err and err.count("\n") == 1
