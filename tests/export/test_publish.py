"""Publishing into a TF Serving model repository: atomic, idempotent, never overwriting."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading

import pytest

from ingot import repository, storage
from ingot.errors import PublishError
from ingot.export import publishing
from ingot.export.publishing import publish


@pytest.fixture
def artifact(exported):
    return exported[0]


def numeric_and_tmp(model_dir):
    entries = sorted(p.name for p in model_dir.iterdir()) if model_dir.exists() else []
    return [e for e in entries if e.isdigit()], [e for e in entries if e.startswith(".tmp-")]


def test_versions_one_two_then_an_idempotent_republish(artifact, other_export, tmp_path):
    first = publish(artifact, tmp_path, "colours")
    second = publish(other_export, tmp_path, "colours")
    again = publish(artifact, tmp_path, "colours")

    assert (first.version, first.created) == (1, True)
    assert (second.version, second.created) == (2, True)
    assert again == publishing.PublishedVersion("colours", 1, first.path, first.model_sha256, created=False)
    assert first.model_sha256 == repository.model_sha256(artifact)
    assert first.model_sha256 != second.model_sha256
    assert repository.list_versions(tmp_path, "colours") == [1, 2]
    assert numeric_and_tmp(tmp_path / "colours") == (["1", "2"], [])
    assert first.path == repository.version_path(tmp_path, "colours", 1) == str(tmp_path / "colours" / "1")


def test_published_card_gets_the_version_and_the_artifact_is_untouched(artifact, tmp_path):
    published = publish(artifact, tmp_path, "colours")
    card = repository.read_model_card(published.path)
    assert card["version"] == 1
    assert card["model_sha256"] == published.model_sha256
    assert repository.read_model_card(artifact)["version"] is None
    assert not (artifact / "MANIFEST.sha256").exists()


def test_manifest_is_sha256sum_compatible_and_complete(artifact, tmp_path):
    published = publish(artifact, tmp_path, "colours")
    version_dir = tmp_path / "colours" / "1"
    assert repository.verify_manifest(version_dir) is True
    listed = [line.split("  ", 1)[1] for line in (version_dir / "MANIFEST.sha256").read_text().splitlines()]
    assert listed == sorted(p.relative_to(version_dir).as_posix() for p in version_dir.rglob("*") if p.is_file() and p.name != "MANIFEST.sha256")
    assert "saved_model.pb" in listed and "assets.extra/model_card.json" in listed
    check = subprocess.run(["sha256sum", "--check", "--quiet", "MANIFEST.sha256"], cwd=version_dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert repository.version_model_sha256(version_dir) == published.model_sha256 == repository.model_sha256(version_dir)


def test_manifest_verify_catches_a_modified_file(artifact, tmp_path):
    publish(artifact, tmp_path, "colours")
    version_dir = tmp_path / "colours" / "1"
    index = version_dir / "variables" / "variables.index"
    index.write_bytes(index.read_bytes() + b"\0")
    with pytest.raises(PublishError, match=r"variables/variables\.index does not match"):
        repository.verify_manifest(version_dir)


def test_manifest_verify_catches_added_and_removed_files(artifact, tmp_path):
    publish(artifact, tmp_path, "colours")
    version_dir = tmp_path / "colours" / "1"
    (version_dir / "assets.extra" / "extra.txt").write_text("sneaked in")
    with pytest.raises(PublishError, match=r"extra\.txt is not listed"):
        repository.verify_manifest(version_dir)
    (version_dir / "assets.extra" / "extra.txt").unlink()
    (version_dir / "fingerprint.pb").unlink()
    with pytest.raises(PublishError, match=r"fingerprint\.pb is listed in MANIFEST\.sha256 but missing"):
        repository.verify_manifest(version_dir)


def test_non_numeric_entries_are_ignored(artifact, tmp_path):
    model_dir = tmp_path / "colours"
    for name in (".tmp-0123abcd", "latest", "v3", "2.bak", "-1"):
        (model_dir / name).mkdir(parents=True)
    (model_dir / "9").write_text("a file, not a version directory")
    assert repository.list_versions(tmp_path, "colours") == []
    assert publish(artifact, tmp_path, "colours").version == 1
    assert repository.list_versions(tmp_path, "colours") == [1]
    assert repository.list_versions(tmp_path, "absent") == []
    assert repository.list_models(tmp_path) == ["colours"]


@pytest.mark.parametrize("target", ["verify_saved_model", "os.rename", "write_manifest"])
def test_a_crash_during_publish_leaves_no_version_and_no_tmp_dir(artifact, tmp_path, monkeypatch, target):
    def crash(*args, **kwargs):
        raise RuntimeError("injected crash")

    if target == "os.rename":
        monkeypatch.setattr(publishing.os, "rename", crash)
    elif target == "write_manifest":
        monkeypatch.setattr(publishing.repository, "write_manifest", crash)
    else:
        monkeypatch.setattr(publishing, target, crash)
    with pytest.raises(PublishError, match="injected crash"):
        publish(artifact, tmp_path, "colours")
    assert numeric_and_tmp(tmp_path / "colours") == ([], [])
    assert repository.list_versions(tmp_path, "colours") == []


def test_a_broken_savedmodel_is_refused_before_it_becomes_a_version(artifact, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    card = json.loads((broken / "assets.extra" / "model_card.json").read_text())
    card["class_names"] = ["red", "green"]  # the model has three outputs
    (broken / "assets.extra" / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(PublishError, match=r"probabilities is float32\[1, 3\]; expected float32\[1, 2\]"):
        publish(broken, tmp_path / "repo", "colours")
    assert numeric_and_tmp(tmp_path / "repo" / "colours") == ([], [])


def test_an_existing_version_is_never_overwritten(artifact, other_export, tmp_path, monkeypatch):
    first = publish(artifact, tmp_path, "colours")
    before = (tmp_path / "colours" / "1" / "MANIFEST.sha256").read_text()
    # A stale view of the repository (as an unlocked racing publisher would have) picks version 1 again.
    monkeypatch.setattr(publishing.repository, "list_versions", lambda base, name: [])
    with pytest.raises(PublishError, match="already exists; published versions are never overwritten"):
        publish(other_export, tmp_path, "colours")
    assert (tmp_path / "colours" / "1" / "MANIFEST.sha256").read_text() == before
    assert repository.verify_manifest(first.path)
    assert numeric_and_tmp(tmp_path / "colours") == (["1"], [])


def test_concurrent_publishers_get_distinct_versions(artifact, other_export, tmp_path):
    results, errors = [], []

    def run(path):
        try:
            results.append(publish(path, tmp_path, "colours"))
        except Exception as err:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(p,)) for p in (artifact, other_export)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.version for r in results) == [1, 2]
    assert numeric_and_tmp(tmp_path / "colours") == (["1", "2"], [])


@pytest.mark.parametrize("name", ["Colours", "a/b", "../up", "", "x" * 64, "-lead", "dots.not.allowed"])
def test_invalid_model_names_are_refused(artifact, tmp_path, name):
    with pytest.raises(PublishError, match="model name .* is not valid"):
        publish(artifact, tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_is_not_a_savedmodel_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PublishError, match="not a SavedModel directory"):
        publish(tmp_path / "empty", tmp_path / "repo", "colours")


def test_publish_through_tf_gfile_to_a_url_base(artifact):
    """The gfile path (gs://, s3:// in production) on TensorFlow's in-memory filesystem."""
    base = "ram://ingot-test-repository"
    first = publish(artifact, base, "colours")
    assert (first.version, first.created, first.path) == (1, True, f"{base}/colours/1")
    assert publish(artifact, base, "colours").created is False
    assert repository.list_versions(base, "colours") == [1]
    assert repository.verify_manifest(first.path)
    assert repository.read_model_card(first.path)["version"] == 1
    assert not [e for e in storage.listdir(f"{base}/colours") if e.startswith(".tmp-")]
