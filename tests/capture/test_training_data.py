"""What a triggered run trains on: the base plus the newest labelled production rows, built into a
dataset version that the registry records, with a rolling window by count."""

from __future__ import annotations

import tempfile
from datetime import timedelta

import pytest

from ingot.capture.dataset import HOLDOUT
from ingot.data.records import open_dataset_artifact
from ingot.errors import ConfigError
from ingot.inference_log.store import InferenceLogStore
from ingot.registry import Registry
from ingot.registry.datasets import dataset_versions
from ingot.retrain.production import ProductionData, build_training_data
from tests.capture.world import CLASSES, MODEL, START, World, colour, make_base


def test_the_newest_rows_become_a_recorded_dataset_version(tmp_path):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with InferenceLogStore.from_url(url) as log:
        world = World(log=log, capture_url=str(tmp_path / "capture"))
        for i in range(50):
            world.serve(colour(i % 3, 7000 + i), [CLASSES[i % 3]], minute=i)
    production = ProductionData(capture_url=world.capture_url, production_weight=3, holdout_fraction=0.2,
                                max_rows=40)
    assert ProductionData.from_json(production.to_json()) == production
    assert "the newest 40 labelled production rows x3" in production.describe()
    base = make_base(tmp_path / "base")
    built = build_training_data(production, model=MODEL, dataset_uri=base, recipe={"image_size": [20, 20]},
                                work_dir=tmp_path / "run", registry_url=url, now=START + timedelta(days=1))
    rows = built.build.sources["production"]
    assert (rows["older_dropped"], rows["train_rows"], rows["holdout_rows"]) == (10, 32, 8)
    oldest_kept = sorted(world.times.values())[10]
    assert min(world.times[sha] for sha in built.build.train_hashes) == oldest_kept
    artifact = open_dataset_artifact(built.directory)
    base_artifact = open_dataset_artifact(base)
    assert len(artifact.train) == len(base_artifact.train) + 32 * 3 and len(artifact.extra[HOLDOUT]) == 8
    assert artifact.report == base_artifact.report  # the base data's report travels with the version
    with Registry.from_url(url) as registry:
        (version,) = dataset_versions(registry, MODEL)
    assert version.id == built.dataset_version.id and version.content_hash == built.build.content_hash
    assert version.parent_hash == base_artifact.content_hash and version.window_end == START + timedelta(days=1)


def test_production_data_needs_a_capture_store_and_a_valid_policy():
    with pytest.raises(ConfigError, match="capture store"):
        ProductionData(capture_url="")
    with pytest.raises(Exception, match="production weight"):
        ProductionData(capture_url="/x", production_weight=0)
    with pytest.raises(Exception, match="max rows"):
        ProductionData(capture_url="/x", max_rows=0)


def test_the_pipeline_step_builds_into_its_artifact_and_records_the_artifact_uri(tmp_path, monkeypatch):
    """build-data as a cluster runs it: the registry and the inference log (here two databases)
    from the environment, the dataset version written into the step's Dataset artifact and
    recorded under the artifact's object-storage URI; ingest then takes it as it is."""
    from components.steps import built_dataset_source, ingest_step
    from ingot.registry.datasets import dataset_versions
    from ingot.retrain.config import resolve_config
    from ingot.retrain.production import pipeline_training_data

    log_url, registry_url = f"sqlite:///{tmp_path / 'log.db'}", f"sqlite:///{tmp_path / 'registry.db'}"
    with InferenceLogStore.from_url(log_url) as log:
        world = World(log=log, capture_url=str(tmp_path / "capture"))
        for i in range(20):
            world.serve(colour(i % 3, 8000 + i), [CLASSES[i % 3]], minute=i)
    monkeypatch.setenv("INGOT_REGISTRY_URL", registry_url)
    monkeypatch.setenv("INGOT_LOG_URL", log_url)
    until = (START + timedelta(minutes=15)).isoformat()  # rows 0..15 lie in the window
    parameter = ProductionData(capture_url=world.capture_url, production_weight=2, holdout_fraction=0.25,
                               until=until).to_parameter()
    artifact, uri = tmp_path / "build-data" / "dataset", "gs://bucket/root/run-1/build-data/dataset"
    scratch = tmp_path / "pod-tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    config = resolve_config({"image_size": [20, 20]})
    built = pipeline_training_data(parameter, model=MODEL, dataset_uri=make_base(tmp_path / "base"), config=config,
                                   output=str(artifact), output_uri=uri)
    assert built["built"] is True and (built["train_rows"], built["holdout_rows"]) == (12, 4)
    assert built["window"]["until"] == until and built["labelled_inputs"] == 16
    with Registry.from_url(registry_url) as registry:
        (version,) = dataset_versions(registry, MODEL)
    assert (version.id, version.uri, version.content_hash) == (built["dataset_version"], uri, built["content_hash"])
    assert version.window_end == START + timedelta(minutes=15)

    # The step's scratch (the base it ingested) is gone with its pod: the artifact alone is the data.
    assert [p.name for p in scratch.iterdir()] == []
    assert version.sources["base"]["uri"] == str(tmp_path / "base")  # the dataset, not the scratch copy
    assert built_dataset_source(artifact) == str(artifact)
    metadata = ingest_step(str(artifact), config, tmp_path / "ingest" / "dataset", tmp_path / "ingest" / "report.html")
    assert metadata["data_hash"] == built["content_hash"]  # what register links the model version by
    assert metadata["split_sizes"][HOLDOUT] == 4


def test_without_a_policy_the_step_leaves_a_note_and_ingest_takes_the_base(tmp_path):
    from components.steps import built_dataset_source
    from ingot.retrain.config import resolve_config
    from ingot.retrain.production import NOT_BUILT_NOTE, pipeline_training_data

    artifact = tmp_path / "dataset"
    built = pipeline_training_data({}, model=MODEL, dataset_uri="", config=resolve_config({}), output=str(artifact),
                                   output_uri=str(artifact), registry_url="postgresql://nobody@127.0.0.1:1/none")
    assert built == {"built": False}  # nothing read, nothing recorded: the registry is not even opened
    assert [p.name for p in artifact.iterdir()] == [NOT_BUILT_NOTE]  # the launcher uploads a file, not nothing
    assert built_dataset_source(artifact) is None and built_dataset_source(None) is None


def test_the_production_parameter_carries_the_policy_and_never_the_log_url(tmp_path):
    from ingot.retrain.config import resolve_config
    from ingot.retrain.production import pipeline_training_data

    production = ProductionData(capture_url="s3://capture/prod", log_url="postgresql://u:secret@db/log",
                                max_rows=500, until="2026-12-01T12:00:00+00:00")
    parameter = production.to_parameter()
    assert parameter == {"capture_url": "s3://capture/prod", "production_weight": 3, "holdout_fraction": 0.2,
                         "max_rows": 500, "until": "2026-12-01T12:00:00+00:00"}
    assert ProductionData.from_parameter(parameter, log_url="sqlite:///log.db") == ProductionData(
        **{**parameter, "log_url": "sqlite:///log.db"})
    # Through KFP a dict parameter is a protobuf Struct: every number arrives as a double.
    assert ProductionData.from_parameter({**parameter, "production_weight": 3.0, "max_rows": 500.0}) == \
        ProductionData.from_parameter(parameter)
    with pytest.raises(Exception, match="production weight 2.5"):
        ProductionData.from_parameter({**parameter, "production_weight": 2.5})
    with pytest.raises(ConfigError, match="log_url.*never a run parameter"):
        ProductionData.from_parameter({**parameter, "log_url": "postgresql://u:secret@db/log"})
    with pytest.raises(ConfigError, match="unknown key.*windw_s"):
        ProductionData.from_parameter({**parameter, "windw_s": 60})
    with pytest.raises(ConfigError, match="not an ISO 8601 time"):
        ProductionData.from_parameter({**parameter, "until": "yesterday"})
    assert ProductionData(capture_url="/x", until="2026-12-01T12:00:00Z").window_end().utcoffset() == timedelta(0)
    with pytest.raises(ConfigError, match="production.until is required"):
        pipeline_training_data({"capture_url": "s3://capture/prod"}, model=MODEL, dataset_uri="",
                               config=resolve_config({}), output=str(tmp_path / "d"), output_uri="gs://b/d",
                               registry_url="sqlite:///unused.db")
