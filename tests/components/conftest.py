"""Shared, session-scoped step outputs: one ingest and one training run feed every test here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.components.tiny import RECIPE, write_image_folder


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("tiny-images"))


@pytest.fixture(scope="session")
def tiny_config():
    from ingot.retrain.config import resolve_config

    return resolve_config(RECIPE)


@pytest.fixture(scope="session")
def ingested(tiny_folder, tiny_config, tmp_path_factory):
    """(dataset dir, data report HTML path, returned metadata) of one ingest_step."""
    from components.steps import ingest_step

    out = tmp_path_factory.mktemp("ingest")
    metadata = ingest_step(str(tiny_folder), tiny_config, out / "dataset", out / "data_report.html")
    return out / "dataset", out / "data_report.html", metadata


@pytest.fixture(scope="session")
def trained(ingested, tiny_config, tmp_path_factory):
    """(model dir, curves HTML path, returned metadata) of one train_step on the ingested split."""
    from components.steps import train_step

    out = tmp_path_factory.mktemp("train")
    metadata = train_step(ingested[0], tiny_config, out / "model", out / "curves.html")
    return out / "model", out / "curves.html", metadata


@pytest.fixture(scope="session")
def evaluation_dirs(tmp_path_factory):
    """A factory of fresh output paths for one evaluate_step call."""

    def make(label: str) -> dict[str, Path]:
        out = tmp_path_factory.mktemp(f"evaluate-{label}")
        return {
            "evaluation_json": out / "evaluation.json",
            "report_html": out / "evaluation.html",
            "serving_model_dir": out / "serving_model",
        }

    return make


@pytest.fixture(scope="session")
def blessed(ingested, trained, tiny_config, evaluation_dirs, tmp_path_factory):
    """A blessed evaluate_step (empty registry: no champion) and its output paths."""
    from components.steps import evaluate_step
    from ingot.evaluate.gate import GateThresholds
    from tests.components.tiny import BLESSING

    paths = evaluation_dirs("blessed")
    registry_url = f"sqlite:///{tmp_path_factory.mktemp('empty-registry') / 'registry.db'}"
    result = evaluate_step(
        ingested[0], trained[0], tiny_config, GateThresholds(**BLESSING), model_name="tiny",
        registry_url=registry_url, pipeline_run_id="run-blessed", **paths,
    )
    return result, paths
