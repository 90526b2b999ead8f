"""The evaluate step on a dataset version: candidate and champion scored on the production
holdout as well as the base test split, both kept in the model card and the registry, the gate's
champion comparison made on the holdout once it has enough rows, and the version linked to the
dataset version it trained on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest

from ingot.capture.dataset import HOLDOUT, BuildPolicy, build_dataset
from ingot.inference_log.store import InferenceLogStore
from ingot.retrain.champion import Champion
from tests.capture.world import CLASSES, MODEL, START, World, colour, make_base


@dataclass(frozen=True)
class AlwaysRed(Champion):
    """A champion that answers class 0 for everything (a third right on balanced colours)."""

    def predict(self, images, *, batch_size=256):
        out = np.zeros((len(images), len(CLASSES)), np.float32)
        out[:, 0] = 1.0
        return out


def colour_model():
    """Mean colour per channel -> that channel's class: right on every colour image."""
    import keras

    inputs = keras.Input((20, 20, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(pooled)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.eye(3, dtype=np.float32) * 0.2, np.zeros(3, np.float32)])
    return model


@pytest.fixture
def built(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with InferenceLogStore.from_url(url) as log:
        world = World(log=log, capture_url=str(tmp_path / "capture"))
        for i in range(60):
            world.serve(colour(i % 3, 5000 + i), [CLASSES[i % 3]], minute=i)
        result = build_dataset(model=MODEL, base=make_base(tmp_path / "base"), output=str(tmp_path / "v1"),
                               log_engine=log.engine, capture_url=world.capture_url,
                               until=START + timedelta(days=1),
                               policy=BuildPolicy(holdout_fraction=0.5, production_weight=3))
    return url, result


def _evaluate(directory, tmp_path):
    from ingot.evaluate.gate import GateThresholds
    from ingot.retrain.steps import evaluate, ingest_artifact
    from ingot.train.config import TrainConfig

    ingested = ingest_artifact(directory, tmp_path / "ingested")
    assert ingested.artifact.content_hash and HOLDOUT in ingested.artifact.extra
    config = TrainConfig.from_dict({"architecture": "cnn", "image_size": [20, 20], "batch_size": 8, "seed": 1})
    champion = AlwaysRed(name=MODEL, version=1, artifact_uri="unused", metrics=None)
    return evaluate(colour_model(), ingested.artifact, config,
                    GateThresholds(min_accuracy=0.0, min_class_f1=0.0, max_regression=0.05),
                    model_name=MODEL, training_summary={}, champion=champion)


def test_a_small_holdout_is_scored_and_kept_but_the_gate_compares_on_the_test_split(built, tmp_path):
    _, result = built
    evaluation = _evaluate(result.directory, tmp_path)
    holdout = evaluation.record.metrics["production_holdout"]
    assert holdout["rows"] == 30 and holdout["gate_compared_here"] is False
    assert holdout["candidate"]["accuracy"] == 1.0
    assert holdout["champion"]["accuracy"] == pytest.approx(1 / 3) and holdout["champion"]["version"] == 1
    low, high = holdout["difference"]["interval"]
    assert holdout["difference"]["value"] == pytest.approx(2 / 3) and 0 < low < 2 / 3 <= high <= 1
    assert evaluation.decision.comparisons["accuracy"]["rows"] == "test"
    card = evaluation.record.model_card()
    assert card["metrics"]["production_holdout"] == holdout
    training = card["training_data"]
    assert training["dataset_content_hash"] == result.content_hash
    assert training["policy"]["production_weight"] == 3 and training["production_train_rows"] == 30


def test_with_enough_holdout_rows_the_champion_comparison_is_made_there(built, tmp_path, monkeypatch):
    import ingot.evaluate.holdout as holdout_module

    monkeypatch.setattr(holdout_module, "MIN_GATE_ROWS", 20)
    _, result = built
    evaluation = _evaluate(result.directory, tmp_path)
    comparison = evaluation.decision.comparisons["accuracy"]
    assert comparison["rows"] == HOLDOUT and comparison["n"] == 30
    check = next(c for c in evaluation.decision.checks if c["name"] == "accuracy_vs_champion")
    assert "on the production_holdout split, 30 rows" in check["text"] and check["passed"]
    assert evaluation.record.metrics["production_holdout"]["gate_compared_here"] is True


def test_the_registry_keeps_both_scores_and_links_the_dataset_version(built, tmp_path):
    from ingot.registry import Registry
    from ingot.registry.datasets import dataset_of, record_dataset_version
    from ingot.retrain.registry import link_trained_dataset

    url, result = built
    evaluation = _evaluate(result.directory, tmp_path)
    record = evaluation.record
    with Registry.from_url(url) as registry:
        dataset = record_dataset_version(registry, model=MODEL, content_hash=result.content_hash,
                                         uri=result.directory, parent_hash=None, window_start=None,
                                         window_end=START + timedelta(days=1), counts=result.counts,
                                         sources=result.sources)
        registry.register_version(MODEL, version=2, artifact_uri=str(tmp_path / "m"), model_sha256="0" * 64,
                                  **record.registry_fields())
        assert link_trained_dataset(registry, MODEL, 2, record.data_hash) == dataset.id
        stored = registry.get_version(MODEL, 2)
        assert stored.metrics["production_holdout"]["champion"]["accuracy"] == pytest.approx(1 / 3)
        assert stored.metrics["accuracy"] == record.metrics["accuracy"]  # the base test split's
        lineage = dataset_of(registry, MODEL, 2)
        assert lineage.id == dataset.id and lineage.sources["production"]["holdout_rows"] == 30
        assert link_trained_dataset(registry, MODEL, 2, "f" * 64) is None  # a plain dataset: no version
