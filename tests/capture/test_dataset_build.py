"""`ingot data build` on SQLite and PostgreSQL: determinism, majority labels and counted ties,
the class check, a time split that never lets a holdout input into training, the manifest's
provenance, and the registry's dataset versions and lineage."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ingot.capture.dataset import HOLDOUT, BuildPolicy, build_dataset
from ingot.data.records import open_dataset_artifact
from ingot.errors import DataError
from ingot.inference_log.store import InferenceLogStore
from tests.capture.world import CLASSES, MODEL, START, World, colour, make_base


@pytest.fixture
def world(database_url, tmp_path):
    with InferenceLogStore.from_url(database_url) as log:
        yield World(log=log, capture_url=str(tmp_path / "capture"))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_base(tmp_path_factory.mktemp("base") / "dataset")


def populate(world, n=20):
    for i in range(n):
        world.serve(colour(i % 3, i), [CLASSES[i % 3]], minute=i)


def build(world, base, out, **policy):
    return build_dataset(model=MODEL, base=base, output=str(out), log_engine=world.log.engine,
                         capture_url=world.capture_url, until=START + timedelta(days=1),
                         policy=BuildPolicy(**policy))


def test_the_same_inputs_give_the_same_artifact_and_hash(world, base, tmp_path):
    populate(world)
    first = build(world, base, tmp_path / "one", holdout_fraction=0.25, production_weight=2)
    second = build(world, base, tmp_path / "two", holdout_fraction=0.25, production_weight=2)
    assert first.content_hash == second.content_hash
    opened = open_dataset_artifact(first.directory)  # verifies every shard and the content hash
    assert opened.content_hash == first.content_hash
    assert opened.recompute_content_hash() == first.content_hash
    base_artifact = open_dataset_artifact(base)
    assert first.counts == {"train": len(base_artifact.train) + 15 * 2, "validation": len(base_artifact.validation),
                            "test": len(base_artifact.test), HOLDOUT: 5}
    manifest = json.loads((tmp_path / "one" / "dataset.json").read_text())
    production = manifest["sources"]["production"]
    assert manifest["sources"]["base"]["content_hash"] == base_artifact.content_hash
    assert production["label_coverage"] == 1.0 and production["conflicts_dropped"] == 0
    assert production["train_rows"] == 15 and production["holdout_rows"] == 5
    assert sum(production["class_counts"]["train"].values()) == 15
    assert manifest["sources"]["policy"] == {"holdout_fraction": 0.25, "production_weight": 2, "min_per_class": 0}
    # A different policy is a different dataset.
    assert build(world, base, tmp_path / "three", holdout_fraction=0.25).content_hash != first.content_hash


def test_repeated_labels_take_the_majority_and_ties_are_dropped_and_counted(world, base, tmp_path):
    populate(world, 6)
    majority = world.serve(colour(0, 500), ["red", "red", "green"], minute=1)
    tie = world.serve(colour(1, 501), ["green", "blue"], minute=2)
    result = build(world, base, tmp_path / "out", holdout_fraction=0.0)
    production = result.sources["production"]
    assert production["conflicts_dropped"] == 1 and production["conflicts_resolved_by_majority"] == 1
    assert majority in result.train_hashes and tie not in result.train_hashes
    records = {sha: label for _, label, sha in open_dataset_artifact(result.directory).train.examples()}
    assert records[majority] == CLASSES.index("red")


def test_labels_the_model_does_not_have_are_a_clear_error(world, base, tmp_path):
    populate(world, 3)
    world.serve(colour(2, 77), ["zebra"], minute=5)
    with pytest.raises(DataError, match=r"'zebra'.*red, green, blue"):
        build(world, base, tmp_path / "out")
    assert not (tmp_path / "out" / "dataset.json").exists()
    with pytest.raises(DataError, match="differ from the base dataset"):
        build_dataset(model=MODEL, base=base, output=str(tmp_path / "x"), log_engine=world.log.engine,
                      capture_url=world.capture_url, class_names=["cat", "dog", "bird"])


def test_the_newest_rows_are_the_holdout_and_never_reach_training(world, base, tmp_path):
    populate(world, 30)
    # An input seen early and again late belongs to its latest sighting: the holdout.
    world.serve(colour(0, 0), ["red"], minute=100)
    result = build(world, base, tmp_path / "out", holdout_fraction=0.2)
    artifact = open_dataset_artifact(result.directory)
    holdout = {sha for _, _, sha in artifact.extra[HOLDOUT].examples()}
    trained = {sha for name in ("train", "validation") for _, _, sha in getattr(artifact, name).examples()}
    assert holdout == result.holdout_hashes and len(holdout) == 6
    assert not holdout & trained
    assert world.shas[0] in holdout  # re-sent at minute 100
    newest_train = max(world.times[sha] for sha in result.train_hashes)
    assert all(world.times[sha] >= newest_train for sha in holdout if sha != world.shas[0])


def test_rows_without_a_captured_input_count_against_coverage_and_min_per_class(world, base, tmp_path):
    populate(world, 9)
    world.serve(colour(1, 900), ["green"], minute=50, captured=False)
    result = build(world, base, tmp_path / "out", holdout_fraction=0.0)
    assert result.sources["production"]["label_coverage"] == pytest.approx(9 / 10)
    with pytest.raises(DataError, match="fewer than 4 production training rows"):
        build(world, base, tmp_path / "refused", holdout_fraction=0.0, min_per_class=4)


def test_dataset_versions_and_lineage_in_the_registry(database_url, world, base, tmp_path):
    from ingot.registry import Registry
    from ingot.registry.datasets import dataset_of, dataset_versions, link_dataset_version, record_dataset_version

    populate(world, 10)
    result = build(world, base, tmp_path / "out")
    with Registry.from_url(database_url) as registry:
        kwargs = dict(model=MODEL, content_hash=result.content_hash, uri=result.directory,
                      parent_hash=result.sources["base"]["content_hash"], window_start=None,
                      window_end=START + timedelta(days=1), counts=result.counts, sources=result.sources)
        first = record_dataset_version(registry, **kwargs)
        again = record_dataset_version(registry, **kwargs)
        assert first.id == again.id and [v.id for v in dataset_versions(registry, MODEL)] == [first.id]
        registry.register_version(MODEL, version=1, artifact_uri="/repo/colours/1", model_sha256="0" * 64)
        assert dataset_of(registry, MODEL, 1) is None
        link_dataset_version(registry, MODEL, 1, first.id)
        lineage = dataset_of(registry, MODEL, 1)
        assert lineage is not None and lineage.content_hash == result.content_hash
        assert lineage.parent_hash == result.sources["base"]["content_hash"]
        assert lineage.counts[HOLDOUT] == result.counts[HOLDOUT]
