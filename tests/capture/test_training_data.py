"""What a triggered run trains on: the base plus the newest labelled production rows, built into a
dataset version that the registry records, with a rolling window by count."""

from __future__ import annotations

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
