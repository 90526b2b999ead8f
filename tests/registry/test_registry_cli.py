"""`ingot models list|show` through the real entry point, on both backends."""

from __future__ import annotations

import json

import pytest

from ingot.cli import main as cli_main
from ingot.registry import Registry
from tests.registry.helpers import publish

PER_CLASS = {
    "0": {"precision": 0.98, "recall": 0.97, "f1": 0.975, "support": 36},
    "1": {"precision": 0.91, "recall": 0.88, "f1": 0.895, "support": 35},
}


@pytest.fixture(autouse=True)
def only_models_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other command modules belong to other parts of Ingot; these tests exercise ours alone,
    # through the real main() (argument parsing, error handling, exit codes).
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("ingot.cli.models",))
    monkeypatch.delenv("INGOT_REGISTRY_URL", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def populated(registry: Registry, registry_url: str) -> str:
    publish(registry, "digits", 1, accuracy=0.9123)
    registry.register_version(
        "digits", version=2, artifact_uri="/repo/digits/2", model_sha256="2" * 64, data_hash="h" * 64,
        config={"architecture": "cnn", "epochs": 3, "image_size": [32, 32]},
        metrics={"accuracy": 0.9456, "macro_f1": 0.94, "per_class": PER_CLASS},
        gate={"blessed": True, "reasons": ["accuracy 0.9456 >= 0.9000"]}, pipeline_run_id="run-2", actor="pipeline",
    )
    registry.mark_ready("digits", 2, verify=lambda uri, sha: True)
    registry.transition("digits", 2, "challenger", reason="A/B test started", actor="ab-controller")
    registry.record_rejection("digits", reasons=["class '3' f1 0.52 < min_class_f1 0.70"],
                              metrics={"accuracy": 0.61}, pipeline_run_id="run-3")
    publish(registry, "cifar", 1, ready=False)
    return registry_url


def test_list_shows_every_record_with_rejection_reasons(capsys, populated: str) -> None:
    code, out, err = run(capsys, "models", "list", "--registry", populated)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "STAGE", "STATUS", "ACCURACY", "CREATED", "NOTE"]
    rows = [line.split()[:5] for line in lines[1:]]
    assert rows[0] == ["cifar", "1", "-", "PENDING", "0.9000"]
    assert rows[2:] == [["digits", "2", "challenger", "READY", "0.9456"], ["digits", "1", "champion", "READY", "0.9123"]]
    assert rows[1][1].startswith("-(#") and rows[1][2:] == ["rejected", "FAILED", "0.6100"]
    assert lines[2].endswith("class '3' f1 0.52 < min_class_f1 0.70")


def test_list_one_model_as_json(capsys, populated: str) -> None:
    code, out, _ = run(capsys, "models", "list", "digits", "--json", "--registry", populated)
    assert code == 0
    document = json.loads(out)
    [model] = document["models"]
    assert (model["name"], model["versions"], model["rejections"], model["champion"]) == ("digits", 2, 1, 1)
    assert [r["version"] for r in model["records"]] == [None, 2, 1]
    assert model["records"][0]["gate"]["reasons"] == ["class '3' f1 0.52 < min_class_f1 0.70"]


def test_list_limit_says_what_it_left_out(capsys, populated: str) -> None:
    code, out, _ = run(capsys, "models", "list", "digits", "--limit", "1", "--registry", populated)
    assert code == 0
    assert len(out.splitlines()) == 3
    assert out.splitlines()[-1] == "... 2 older records of digits not shown (--limit 0 shows all)"


def test_show_a_version_with_lineage_metrics_and_history(capsys, populated: str) -> None:
    code, out, _ = run(capsys, "models", "show", "digits:2", "--registry", populated)
    assert code == 0
    assert out.splitlines()[0] == "digits:2  stage challenger  status READY"
    for expected in (
        "  artifact      /repo/digits/2",
        f"  model_sha256  {'2' * 64}",
        "  pipeline run  run-2",
        f"  data hash     {'h' * 64}",
        "    image_size: [32, 32]",
        "  accuracy 0.9456  macro_f1 0.9400",
        "  blessed",
        "  - accuracy 0.9456 >= 0.9000",
    ):
        assert expected in out.splitlines(), expected
    assert any(line.split() == ["1", "0.9100", "0.8800", "0.8950", "35"] for line in out.splitlines())
    history = out.split("Stage history\n")[1].splitlines()
    assert history[0].endswith("(new) -> candidate  by pipeline: blessed; digits:1 is champion")
    assert history[1].endswith("candidate -> challenger  by ab-controller: A/B test started")


def test_show_a_model_lists_its_champion_and_rejections(capsys, populated: str) -> None:
    code, out, _ = run(capsys, "models", "show", "digits", "--registry", populated)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("digits: 2 published versions, 1 rejections, champion digits:1")
    assert lines[2] == "digits:1  stage champion  status READY"
    rejections = out.split("Rejections (newest first)\n")[1].splitlines()
    assert "pipeline run run-3" in rejections[0] and "accuracy 0.6100" in rejections[0]
    assert rejections[1] == "      - class '3' f1 0.52 < min_class_f1 0.70"


def test_show_a_rejection_by_its_id(capsys, populated: str) -> None:
    code, out, _ = run(capsys, "models", "list", "digits", "--registry", populated)
    record_id = out.splitlines()[1].split()[1].strip("-()")
    code, out, _ = run(capsys, "models", "show", f"digits:{record_id}", "--registry", populated)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"digits (rejection {record_id})  stage rejected  status FAILED"
    assert "  artifact      - (nothing published)" in lines and "  not blessed" in lines
    assert "  - class '3' f1 0.52 < min_class_f1 0.70" in lines
    assert lines[-1].endswith("(new) -> rejected  by ingot: class '3' f1 0.52 < min_class_f1 0.70")


def test_show_by_stage_and_as_json(capsys, populated: str) -> None:
    code, out, _ = run(capsys, "models", "show", "digits:challenger", "--json", "--registry", populated)
    assert code == 0
    document = json.loads(out)
    assert document["record"]["version"] == 2 and document["record"]["stage"] == "challenger"
    assert [e["to_stage"] for e in document["events"]] == ["candidate", "challenger"]
    assert "rejections" not in document
    code, out, _ = run(capsys, "models", "show", "digits:latest", "--registry", populated)
    assert code == 0 and out.startswith("digits:2 ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("models", "list", "mnist"), "ingot: error: no model named 'mnist' in the registry (known: cifar, digits)"),
        (("models", "show", "mnist:1"), "ingot: error: no model named 'mnist' in the registry (known: cifar, digits)"),
        (("models", "show", "digits:7"), "ingot: error: model 'digits' has no version 7 (latest is 2)"),
        (("models", "show", "digits:archived"), "ingot: error: model 'digits' has no archived version"),
        (("models", "show", "digits:prod"), "ingot: error: version 'prod' in 'digits:prod' is not valid; expected a "
                                           "positive integer, 'latest', a stage (candidate, challenger, champion, "
                                           "archived, rejected) or #ID"),
        (("models", "show", "cifar:#3"), "ingot: error: record #3 belongs to 'digits', not 'cifar'"),
        (("models", "list", "--limit", "-1"), "ingot: error: --limit must be 0 (all) or a positive number, got -1"),
    ],
)
def test_errors_are_one_readable_line_and_a_non_zero_exit(capsys, populated: str, argv, message: str) -> None:
    code, out, err = run(capsys, *argv, "--registry", populated)
    assert code == 1 and out == ""
    assert err.splitlines() == [message]


def test_registry_url_comes_from_the_environment(capsys, populated: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGOT_REGISTRY_URL", populated)
    code, out, _ = run(capsys, "models", "show", "cifar:1")
    assert code == 0 and out.startswith("cifar:1  stage -  status PENDING")


def test_default_registry_is_sqlite_in_the_data_directory(capsys, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGOT_DATA_DIR", str(tmp_path / "data"))
    code, out, _ = run(capsys, "models", "list")
    assert code == 0
    assert out == f"no models registered in sqlite:///{tmp_path / 'data' / 'registry.db'}\n"
    assert (tmp_path / "data" / "registry.db").is_file()


def test_a_bad_registry_url_is_one_line(capsys) -> None:
    code, out, err = run(capsys, "models", "list", "--registry", "mysql://db/registry")
    assert code == 1
    assert err == ("ingot: error: registry URL scheme 'mysql' is not supported; expected sqlite:///PATH or "
                   "postgresql://USER@HOST:PORT/DATABASE\n")


def test_help_for_every_command(capsys) -> None:
    for argv in (["models", "--help"], ["models", "list", "--help"], ["models", "show", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            cli_main.main(argv)
        assert exit_info.value.code == 0
        assert "usage: ingot models" in capsys.readouterr().out
