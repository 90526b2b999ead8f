"""The foundation's promise end to end: the bundled digits folder → the cnn → a blessed,
published SavedModel that serves the same answer from raw pixels and from encoded bytes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingot.cli.main import main
from ingot.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("digits-e2e")]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits-e2e")
    repository = root / "repository"
    code = main([
        "train", "--config", "configs/digits-cnn.yaml", "--set", "epochs=12",
        "--model-name", "digits", "--model-repository", str(repository), "--work-dir", str(root / "run1"),
        "--registry", f"sqlite:///{root / 'registry.db'}", "--register", "--require-blessing",
    ])
    return code, root, repository


def test_trains_blesses_and_publishes_above_090(first_run):
    code, _root, repository = first_run
    assert code == 0
    version_dir = repository / "digits" / "1"
    card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())
    assert card["version"] == 1
    assert card["metrics"]["accuracy"] >= 0.90
    assert min(c["f1"] for c in card["metrics"]["per_class"].values()) >= 0.7
    assert card["gate"]["blessed"] is True
    assert card["training_config"]["architecture"] == "cnn"
    assert len(card["data_hash"]) == 64
    assert (version_dir / "MANIFEST.sha256").is_file()


def test_the_int8_model_ships_beside_it_within_half_a_point(first_run):
    """`ingot train` also writes the int8 model.tflite: calibrated on training images, judged on
    the float model's own test rows, within the default 0.5-point tolerance on digits."""
    _code, _root, repository = first_run
    version_dir = repository / "digits" / "1"
    int8 = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())["int8"]
    assert int8["shipped"] is True and (version_dir / "model.tflite").is_file()
    assert int8["difference"] >= -0.005 and int8["agreement"] >= 0.99
    assert int8["size_bytes"]["int8"] * 3 < int8["size_bytes"]["float_saved_model"]
    assert "  model.tflite\n" in (version_dir / "MANIFEST.sha256").read_text()


def test_published_model_answers_same_from_pixels_and_png(first_run):
    import tensorflow as tf

    from ingot.data.preprocess import decode_and_resize
    from ingot.data.records import open_dataset_artifact

    _code, root, repository = first_run
    artifact = open_dataset_artifact(str(root / "run1" / "dataset"))
    examples = [example for example, _ in zip(artifact.test.examples(), range(16))]
    loaded = tf.saved_model.load(str(repository / "digits" / "1"))
    raw = tf.constant([image for image, _, _ in examples])
    labels = np.array([label for _, label, _ in examples])
    pixels = tf.stack([decode_and_resize(image, (32, 32)) for image in raw])
    by_pixels = loaded.signatures["serving_default"](images=pixels)
    by_bytes = loaded.signatures["serving_bytes"](image_bytes=raw)
    np.testing.assert_array_equal(by_pixels["class_ids"].numpy(), by_bytes["class_ids"].numpy())
    np.testing.assert_allclose(by_pixels["probabilities"].numpy(), by_bytes["probabilities"].numpy(), atol=1e-6)
    accuracy = np.mean(by_bytes["class_ids"].numpy() == labels)
    assert accuracy >= 0.8


def test_second_run_is_compared_with_the_champion(first_run, capsys):
    _code, root, repository = first_run
    capsys.readouterr()
    code = main([
        "train", "--config", "configs/digits-cnn.yaml", "--set", "epochs=2",
        "--model-name", "digits", "--model-repository", str(repository), "--work-dir", str(root / "run2"),
        "--registry", f"sqlite:///{root / 'registry.db'}", "--register", "--require-blessing",
    ])
    out = capsys.readouterr().out
    # The champion is the registry's (the first run registered it), exactly as the pipeline compares.
    with Registry.from_url(f"sqlite:///{root / 'registry.db'}") as registry:
        champion = registry.champion("digits")
        rejections = [r for r in registry.list_versions("digits") if r.is_rejection]
    assert champion.version == 1
    assert f"champion accuracy {champion.metrics['accuracy']:.4f}" in out
    # Two epochs cannot match a twelve-epoch champion within 1%: rejected, nothing new published.
    assert code == 3
    assert "REJECTED" in out
    assert sorted(p.name for p in (repository / "digits").iterdir() if p.name.isdigit()) == ["1"]
    assert len(rejections) == 1 and any("champion" in reason for reason in rejections[0].reasons)
