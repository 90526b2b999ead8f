"""build-data's component body: the kfp artifact in and out, the config resolved like ingest's,
nothing built (and the registry never opened) without a production policy."""

from __future__ import annotations

import json

import pytest

from ingot.errors import ConfigError
from tests.components.tiny import RECIPE


def test_without_production_the_body_leaves_a_note_and_reports_nothing_built(tmp_path):
    from kfp import dsl

    from components.build_data.component import build_data
    from components.steps import built_dataset_source
    from ingot.retrain.production import NOT_BUILT_NOTE

    dataset = dsl.Dataset(name="dataset", uri=str(tmp_path / "dataset"))
    out = build_data(production={}, dataset_uri="", recipe=RECIPE, overrides=[], architecture="", epochs=0,
                     model_name="tiny", registry_url="", dataset=dataset)
    assert out == {"built": False} and dataset.metadata["built"] is False
    assert json.loads((tmp_path / "dataset" / NOT_BUILT_NOTE).read_text())["built"] is False
    assert built_dataset_source(dataset.path) is None  # ingest loads dataset_uri as before


def test_the_body_refuses_a_bad_recipe_or_a_log_url_before_reading_anything(tmp_path):
    from kfp import dsl

    from components.build_data.component import build_data

    dataset = dsl.Dataset(name="dataset", uri=str(tmp_path / "dataset"))
    policy = {"capture_url": str(tmp_path / "capture"), "until": "2026-12-01T00:00:00Z"}
    with pytest.raises(ConfigError, match="epochz"):
        build_data(production=policy, dataset_uri="", recipe={"epochz": 3}, overrides=[], architecture="", epochs=0,
                   model_name="tiny", registry_url="", dataset=dataset)
    # Without a policy the recipe is not read here: ingest reports it, as before the step existed.
    assert build_data(production={}, dataset_uri="", recipe={"epochz": 3}, overrides=[], architecture="", epochs=0,
                      model_name="tiny", registry_url="", dataset=dataset) == {"built": False}
    with pytest.raises(ConfigError, match="never a run parameter"):
        build_data(production={"capture_url": "s3://c/p", "log_url": "postgresql://u:p@db/log",
                               "until": "2026-12-01T00:00:00Z"},
                   dataset_uri="", recipe=RECIPE, overrides=[], architecture="", epochs=0, model_name="tiny",
                   registry_url="", dataset=dataset)
