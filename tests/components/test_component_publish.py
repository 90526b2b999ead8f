"""publish: the blessed export becomes the next version; a retry returns that version."""

from __future__ import annotations

import pytest

from ingot import repository

# One worker runs every step test, so the session's ingest and training happen once.
pytestmark = pytest.mark.xdist_group("tiny-steps")


def test_publish_then_retry_creates_exactly_one_version(blessed, tmp_path):
    from components.steps import publish_step

    serving = blessed[1]["serving_model_dir"]
    first = publish_step(serving, str(tmp_path / "repo"), "tiny")
    retry = publish_step(serving, str(tmp_path / "repo"), "tiny")

    assert (first.version, first.created) == (1, True)
    assert (retry.version, retry.created) == (1, False)
    assert retry.path == first.path and retry.model_sha256 == first.model_sha256
    assert repository.list_versions(str(tmp_path / "repo"), "tiny") == [1]
    assert repository.verify_manifest(first.path)
    card = repository.read_model_card(first.path)
    assert card["version"] == 1 and card["model_sha256"] == first.model_sha256


def test_empty_repository_means_the_steps_environment_and_never_a_silent_default(blessed, tmp_path, monkeypatch):
    from components.steps import publish_step
    from ingot.errors import ConfigError

    monkeypatch.setenv("INGOT_MODEL_REPOSITORY", str(tmp_path / "from-env"))
    published = publish_step(blessed[1]["serving_model_dir"], "", "tiny")
    assert published.path == str(tmp_path / "from-env" / "tiny" / "1")
    monkeypatch.delenv("INGOT_MODEL_REPOSITORY")
    with pytest.raises(ConfigError, match="no model repository given"):
        publish_step(blessed[1]["serving_model_dir"], "", "tiny")


def test_component_body_returns_version_path_digest_and_whether_it_was_new(blessed, tmp_path):
    from kfp import dsl

    from components.publish.component import publish

    serving = dsl.Model(name="serving_model", uri=str(blessed[1]["serving_model_dir"]))
    first = publish(serving_model=serving, model_name="tiny", model_repository=str(tmp_path))
    again = publish(serving_model=serving, model_name="tiny", model_repository=str(tmp_path))
    assert (first.version, first.created, again.version, again.created) == (1, True, 1, False)
    assert first.path == str(tmp_path / "tiny" / "1") and len(first.model_sha256) == 64
