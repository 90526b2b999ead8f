"""`ingot monitor check|run|history` against a real registry and inference log (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from ingot.cli.main import main
from ingot.db import normalize_url, open_engine
from ingot.evaluate.drift import input_statistics
from tests.components.tiny import RECIPE
from tests.monitor.conftest import make_champion, write_log
from tests.monitor.simulate import CLASS_NAMES, baseline, draw
from tests.pipelines.kfp_api import fake_kfp_api

CARD = {"name": "digits", "class_names": CLASS_NAMES, "training_config": RECIPE,
        "gate": {"blessed": True, "reasons": [], "checks": [],
                 "thresholds": {"min_accuracy": 0.5, "min_class_f1": 0.1, "max_regression": 1.0}},
        "metrics": {"accuracy": 0.85}, **baseline().to_card()}


@pytest.fixture
def url(database_url, tmp_path):
    make_champion(database_url, "digits", CARD, tmp_path / "repo" / "digits" / "1")
    return database_url


def _log(url, batch, **kwargs):
    engine = open_engine(normalize_url(url))
    means, stds = input_statistics(batch.images)
    write_log(engine, "digits", batch.predicted, batch.confidence, means=means, stds=stds, **kwargs)
    engine.dispose()


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from ingot.cli.main import main\ntry: main(['monitor', 'check', '--help'])\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in ('kfp', 'tensorflow', 'sqlalchemy', 'scipy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]")


def test_stable_traffic_exits_0_and_drift_exits_3_with_a_report(url, tmp_path, capsys):
    _log(url, draw(600, np.random.default_rng(5)))
    assert main(["monitor", "check", "digits", "--registry", url, "--window", "600"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digits (champion version 1): NO DRIFT") and "confidence_ks" in out

    _log(url, draw(600, np.random.default_rng(6), invert=True, sharpness=1.5))
    report = tmp_path / "out" / "check.html"
    assert main(["monitor", "check", "digits", "--registry", url, "--window", "600", "--json",
                 "--report", str(report)]) == 3
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "drift" and "input_mean_ks" in result["result"]["drifted"]
    assert result["window"]["rows"] == 600 and result["trigger"] is None
    page = report.read_text()
    assert page.count("<img") == 4 and "data:image/png;base64," in page and "input_mean_ks" in page
    assert [p.name for p in report.parent.iterdir()] == ["check.html"]  # no temp file left behind


def test_insufficient_data_never_triggers(url, capsys):
    _log(url, draw(50, np.random.default_rng(7), prior=[1, 0, 0, 0, 0]))
    with fake_kfp_api() as kfp_api:
        code = main(["monitor", "check", "digits", "--registry", url, "--trigger", "--host", kfp_api.url])
    assert code == 0 and kfp_api.runs() == []
    assert "INSUFFICIENT DATA" in capsys.readouterr().out
    assert main(["monitor", "history", "digits", "--registry", url]) == 0
    assert "no retraining triggers" in capsys.readouterr().out


def test_drift_with_trigger_submits_once_then_refuses_and_history_lists_it(url, capsys):
    _log(url, draw(500, np.random.default_rng(8), prior=[0.8, 0.05, 0.05, 0.05, 0.05]))
    with fake_kfp_api() as kfp_api:
        argv = ["monitor", "check", "digits", "--registry", url, "--window", "500", "--trigger",
                "--host", kfp_api.url, "--dataset", "gs://bucket/digits"]
        assert main(argv) == 3
        first = capsys.readouterr().out
        assert f"triggered retraining: trigger #1, kfp run {kfp_api.run_id}" in first
        assert main(argv) == 3
        assert "no retraining started: trigger #1 of 'digits' is still running" in capsys.readouterr().out
        assert len(kfp_api.runs()) == 1
        assert kfp_api.runs()[0]["runtime_config"]["parameters"]["dataset_uri"] == "gs://bucket/digits"
        assert main(["monitor", "history", "digits", "--registry", url, "--json"]) == 0
        (trigger,) = json.loads(capsys.readouterr().out)
        assert trigger["state"] == "running" and "class_prior_chi2" in trigger["reason"]
        assert trigger["statistics"]["window"]["rows"] == 500


def test_a_cluster_trigger_trains_on_production_data_from_an_object_store_capture(url, capsys, monkeypatch):
    """With --host the production policy goes to the run when the capture store is one its pods can
    read (s3://, gs://); a local directory leaves the run on the base data, and says so."""
    from ingot.monitor.triggers import SUCCEEDED, TriggerStore

    _log(url, draw(500, np.random.default_rng(8), prior=[0.8, 0.05, 0.05, 0.05, 0.05]))
    monkeypatch.setenv("INGOT_CAPTURE_URL", "s3://capture/prod")
    monkeypatch.setenv("INGOT_LOG_URL", url)
    with fake_kfp_api() as kfp_api:
        argv = ["monitor", "check", "digits", "--registry", url, "--window", "500", "--trigger", "--cooldown", "1s",
                "--host", kfp_api.url, "--production-weight", "2", "--max-production-rows", "800"]
        assert main(argv) == 3
        (run,) = kfp_api.runs()
    production = run["runtime_config"]["parameters"]["production"]
    assert production["capture_url"] == "s3://capture/prod" and production["until"]
    assert (production["production_weight"], production["max_rows"], production["holdout_fraction"]) == (2, 800, 0.2)
    assert "log_url" not in production and url not in json.dumps(run)  # the log URL stays in the cluster's Secret

    engine = open_engine(normalize_url(url))
    store = TriggerStore(engine)
    store.finish(store.in_flight("digits").id, SUCCEEDED)  # the first run is over: the slot is free
    engine.dispose()
    time.sleep(1.1)  # and the 1 s cooldown has passed
    monkeypatch.setenv("INGOT_CAPTURE_URL", "/var/lib/ingot/capture")
    capsys.readouterr()
    with fake_kfp_api() as kfp_api:
        argv[argv.index("--host") + 1] = kfp_api.url
        assert main(argv) == 3
        (run,) = kfp_api.runs()
    assert "production" not in run["runtime_config"]["parameters"]
    err = capsys.readouterr().err
    assert "train on the base dataset only" in err and "/var/lib/ingot/capture" in err


def test_errors_are_one_line_and_exit_1(database_url, capsys):
    assert main(["monitor", "check", "nothing", "--registry", database_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ingot: error: no model named 'nothing'") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["monitor", "check", "digits", "--since", "soon"])
    assert exit_info.value.code == 2
    assert "expected a positive number and a unit" in capsys.readouterr().err


def test_run_survives_a_database_that_is_down(tmp_path, capsys):
    missing = "postgresql://nobody@127.0.0.1:1/none"
    assert main(["monitor", "run", "digits", "--registry", missing, "--interval", "1s", "--iterations", "2"]) == 0
    err = capsys.readouterr().err
    assert err.count("ingot: error:") == 2 and "cannot open the registry" in err


def test_a_local_trigger_runs_in_the_background_and_its_failure_releases_the_slot(url, tmp_path, capsys, monkeypatch):
    """No --host: `ingot pipeline run` starts in a background process. Pointed at a dataset that
    does not exist it fails at once; the runner records that, which frees the slot for the next
    drifted check once the (here 1 s) cooldown has passed."""
    import time

    monkeypatch.setenv("INGOT_DATA_DIR", str(tmp_path / "data"))
    _log(url, draw(500, np.random.default_rng(9), prior=[0.8, 0.05, 0.05, 0.05, 0.05]))
    argv = ["monitor", "check", "digits", "--registry", url, "--window", "500", "--trigger", "--cooldown", "1s",
            "--dataset", str(tmp_path / "missing"), "--model-repository", str(tmp_path / "repo")]
    assert main(argv) == 3
    assert "triggered retraining: trigger #1, local run local-1-" in capsys.readouterr().out
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert main(["monitor", "history", "digits", "--registry", url, "--json"]) == 0
        (trigger,) = json.loads(capsys.readouterr().out)
        if trigger["state"] != "running":
            break
        time.sleep(1)
    assert trigger["state"] == "failed" and "exited with status 1" in trigger["detail"]
    log = open(trigger["log_path"]).read()
    assert "does not exist" in log and trigger["log_path"].startswith(str(tmp_path / "data" / "monitor" / "digits"))
    time.sleep(1.1)
    assert main(argv) == 3
    assert "triggered retraining: trigger #2" in capsys.readouterr().out
    deadline = time.monotonic() + 180  # let the second runner finish before the database goes away
    while time.monotonic() < deadline:
        assert main(["monitor", "history", "digits", "--registry", url, "--json", "--limit", "1"]) == 0
        if json.loads(capsys.readouterr().out)[0]["state"] != "running":
            break
        time.sleep(1)
