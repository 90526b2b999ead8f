"""Database URLs (with their passwords) never travel in process arguments or KFP run parameters:
`ingot pipeline run --host` passes a Secret's name, a local run hands the registry URL to its
steps in their environment, and a locally triggered retraining gets its URLs in its environment."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from ingot.cli.main import main
from tests.components.tiny import RECIPE
from tests.pipelines.kfp_api import fake_kfp_api

PASSWORD = "hunter2-very-secret"
URL = f"postgresql://ingot:{PASSWORD}@db.example:5432/registry"


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def test_host_refuses_a_registry_url_and_submits_nothing(recipe_file, capsys, monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_SA_TOKEN_PATH", raising=False)
    with fake_kfp_api() as kfp_api:
        assert main(["pipeline", "run", "--host", kfp_api.url, "--config", str(recipe_file), "--registry", URL]) == 1
        assert kfp_api.runs() == []
    err = capsys.readouterr().err
    assert "--registry-secret NAME" in err and PASSWORD not in err and len(err.strip().splitlines()) == 1


def test_host_passes_the_secret_name_and_no_url_anywhere_in_the_run(recipe_file, capsys, monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_SA_TOKEN_PATH", raising=False)
    monkeypatch.setenv("INGOT_REGISTRY_URL", URL)  # the submitter's own environment stays its own
    with fake_kfp_api() as kfp_api:
        assert main(["pipeline", "run", "--host", kfp_api.url, "--config", str(recipe_file),
                     "--registry-secret", "ingot-registry-prod"]) == 0
        (run,) = kfp_api.runs()
    assert run["runtime_config"]["parameters"]["registry_secret"] == "ingot-registry-prod"
    assert PASSWORD not in json.dumps(run)


def test_a_bad_secret_name_is_refused(recipe_file, capsys):
    assert main(["pipeline", "run", "--host", "http://127.0.0.1:9", "--config", str(recipe_file),
                 "--registry-secret", "Not_A_Name"]) == 1
    assert "is not a Kubernetes Secret name" in capsys.readouterr().err


def test_a_local_run_gives_its_steps_the_registry_url_in_their_environment(monkeypatch, tmp_path):
    """kfp's local runner puts parameters on each step's command line, so the URL is not one."""
    import pipelines.local
    from pipelines.launch import run_request_locally
    from pipelines.request import PipelineRequest

    seen = {}

    def fake_run_locally(pipeline, arguments, **_kw):
        seen.update(arguments=arguments, env=os.environ.get("INGOT_REGISTRY_URL"))
        raise RuntimeError("stop here")

    monkeypatch.setattr(pipelines.local, "run_locally", fake_run_locally)
    monkeypatch.delenv("INGOT_REGISTRY_URL", raising=False)
    request = PipelineRequest(model_name="tiny", recipe={"epochs": 1}, dataset_uri="bundled:digits",
                              registry_url=URL, model_repository=str(tmp_path / "repo"))
    with pytest.raises(RuntimeError, match="stop here"):
        run_request_locally(request, pipeline_root=tmp_path / "root")
    assert "registry_url" not in seen["arguments"] and PASSWORD not in json.dumps(seen["arguments"])
    assert seen["env"] == URL.replace("postgresql://", "postgresql+psycopg://")  # as for_local_run resolved it
    assert "INGOT_REGISTRY_URL" not in os.environ  # restored afterwards


def test_a_local_trigger_gets_its_database_urls_in_its_environment_not_its_arguments(tmp_path):
    from ingot.monitor.launch import Recipe
    from ingot.monitor.triggers import LOCAL, TriggerStore
    from ingot.registry import Registry
    from pipelines.launch import start_local

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    card = {"training_config": RECIPE, "gate": {"thresholds": {}}}
    with Registry.from_url(url) as registry:
        store = TriggerStore(registry.engine)
        claimed = store.claim("tiny", reason="drift", statistics={}, backend=LOCAL)
        started = start_local(store, claimed, Recipe.from_card(card), db_url=url, dataset_uri=str(tmp_path / "none"),
                              registry_url=url, model_repository=str(tmp_path / "repo"), work_dir=tmp_path / "runs")
        proc = Path(f"/proc/{started.pid}")
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        environ = (proc / "environ").read_bytes().split(b"\0")
        assert argv and not any(b"registry.db" in arg for arg in argv)
        assert f"INGOT_REGISTRY_URL={url}".encode() in environ and f"INGOT_MONITOR_DB_URL={url}".encode() in environ
        request = json.loads((Path(started.log_path).parent / "request.json").read_text())
        assert request["registry_url"] is None
        deadline = time.monotonic() + 120
        while store.get(claimed.id).state == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert store.get(claimed.id).state == "failed"  # no such dataset: the runner recorded it
