"""ingot-retrain with a `production` policy through kfp's local runner: the build-data step builds
the base plus the labelled captured rows into a dataset version, ingest takes its artifact as it
is, the run trains and is judged on it (the production holdout scored), and the registry links the
model version to that dataset version. The same run sets `int8_max_loss`, which the evaluate step
applies to the int8 model.tflite (the card records the tolerance and whether it shipped)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ingot import repository
from ingot.capture.dataset import HOLDOUT
from ingot.inference_log.store import InferenceLogStore
from ingot.registry import Registry
from ingot.registry.datasets import dataset_of, dataset_versions
from ingot.retrain.production import ProductionData
from pipelines.local import executor_outputs
from tests.capture.world import CLASSES, MODEL, START, World, colour
from tests.components.tiny import BLESSING, RECIPE, write_image_folder

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline-local-runs")]


@pytest.fixture(scope="module")
def production_run(tmp_path_factory):
    from ingot.retrain.config import resolve_config
    from pipelines.launch import run_request_locally
    from pipelines.request import PipelineRequest

    base = tmp_path_factory.mktemp("pipeline-production")
    url = f"sqlite:///{base / 'registry.db'}"  # the registry's database holds the inference log too
    with InferenceLogStore.from_url(url) as log:
        world = World(log=log, capture_url=str(base / "capture"))
        for i in range(24):  # red, green, blue: classes the tiny folder has
            world.serve(colour(i % 3, 9000 + i), [CLASSES[i % 3]], minute=i)
        world.serve(colour(0, 9999), [CLASSES[0]], minute=60)  # after the window's end: left out
    until = (START + timedelta(minutes=30)).isoformat()
    production = ProductionData(capture_url=world.capture_url, production_weight=2, holdout_fraction=0.25,
                                until=until)
    request = PipelineRequest.from_config(
        resolve_config(RECIPE), model_name=MODEL, dataset_uri=str(write_image_folder(base / "images")),
        model_repository=str(base / "repo"), registry_url=url, production=production.to_parameter(),
        int8_max_loss=0.0, **BLESSING)
    report = run_request_locally(request, pipeline_root=base / "root")
    return report, url, base


def test_the_run_trains_on_a_dataset_version_the_build_step_recorded(production_run):
    report, url, base = production_run
    steps = {step["name"]: step["status"] for step in report["steps"]}
    assert steps["build-data"] == "SUCCESS" and steps["ingest"] == "SUCCESS" and steps["register"] == "SUCCESS"
    record = report["record"]
    outputs = executor_outputs(Path(report["run_dir"]))
    built = outputs["build-data"]["parameterValues"]["Output"]
    assert built["built"] is True and (built["train_rows"], built["holdout_rows"]) == (18, 6)
    assert built["window"]["until"] == START.replace(minute=30).isoformat()

    with Registry.from_url(url) as registry:
        (version,) = dataset_versions(registry, MODEL)
        linked = dataset_of(registry, MODEL, record["version"])
    assert version.id == built["dataset_version"] and linked is not None and linked.id == version.id
    assert record["data_hash"] == version.content_hash  # the model trained on exactly that version
    artifact = outputs["build-data"]["artifacts"]["dataset"]["artifacts"][0]
    assert version.uri == artifact["uri"]  # recorded where the step's artifact lives
    ingested = outputs["ingest"]["artifacts"]["dataset"]["artifacts"][0]["metadata"]
    assert ingested["built_by"] == "build-data" and ingested["split_sizes"][HOLDOUT] == 6


def test_the_card_says_what_the_version_trained_on_and_how_it_did_on_the_production_holdout(production_run):
    report, _, base = production_run
    card = repository.read_model_card(report["record"]["artifact_uri"])
    data = card["training_data"]
    assert (data["production_train_rows"], data["production_holdout_rows"]) == (18, 6)
    assert data["policy"]["production_weight"] == 2 and data["dataset_content_hash"] == card["data_hash"]
    assert data["base"] == str(base / "images")  # the dataset the step ingested, not its pod's scratch copy
    assert card["metrics"]["production_holdout"]["rows"] == 6


def test_the_int8_tolerance_parameter_decides_what_ships(production_run):
    report, _, _ = production_run
    path = report["record"]["artifact_uri"]
    int8 = repository.read_model_card(path)["int8"]
    assert int8["max_loss"] == 0.0  # the run's parameter, not the 0.005 default
    assert int8["shipped"] == (int8["difference"] >= 0.0)
    assert (Path(path) / "model.tflite").is_file() == int8["shipped"]
    if not int8["shipped"]:
        assert "tolerance 0.00 points" in int8["reason"]
