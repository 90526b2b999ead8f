"""The int8 model.tflite beside the SavedModel: conversion, parity with the float model on digits,
the tolerance refusing a mis-calibrated one, and publishing it inside the version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.export.int8_support import export, train_digits


@pytest.fixture(scope="module")
def digits():
    return train_digits()


@pytest.fixture(scope="module")
def exported(digits, tmp_path_factory):
    return export(digits, tmp_path_factory.mktemp("int8") / "digits")


def test_export_writes_a_full_integer_model_beside_the_saved_model(exported, digits):
    from ingot.export.tflite import Int8Model

    assert (exported / "model.tflite").is_file() and (exported / "saved_model.pb").is_file()
    section = json.loads((exported / "assets.extra" / "model_card.json").read_text())["int8"]
    assert section["shipped"] is True and section["reason"] is None
    assert section["test_rows"] == len(digits.test_labels) and section["calibration_images"] == 300
    assert section["agreement"] >= 0.99
    assert section["difference"] >= -0.005 and section["accuracy"] == pytest.approx(
        section["float_accuracy"] + section["difference"])
    assert section["comparison"]["method"].startswith("exact McNemar")
    assert section["size_bytes"]["int8"] == (exported / "model.tflite").stat().st_size
    assert section["size_bytes"]["int8"] * 4 < section["size_bytes"]["float_saved_model"]
    assert section["latency_ms"]["int8"]["p50"] > 0 and section["latency_ms"]["float"]["p99"] > 0

    runner = Int8Model(model_path=exported / "model.tflite")
    details = runner.interpreter.get_input_details()[0]
    assert details["dtype"] == np.uint8 and details["quantization"] == (1.0, 0)
    assert runner.image_size == (16, 16) and runner.num_classes == 10


def test_int8_agrees_with_the_float_signature_on_the_same_uint8_images(exported, digits):
    """serving_default of the SavedModel and the int8 model take the very same uint8 pixels."""
    import tensorflow as tf

    from ingot.export.tflite import Int8Model

    signature = tf.saved_model.load(str(exported)).signatures["serving_default"]
    float_ids = signature(images=tf.constant(digits.test_images))["class_ids"].numpy()
    int8 = Int8Model(model_path=exported / "model.tflite").predict_batched(digits.test_images, batch_size=32)
    assert int8.shape == (len(digits.test_images), 10) and int8.dtype == np.float32
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=0.02)
    agreement = float((int8.argmax(axis=1) == float_ids).mean())
    assert agreement >= 0.99, agreement
    accuracy = float((int8.argmax(axis=1) == digits.test_labels).mean())
    assert accuracy >= float((float_ids == digits.test_labels).mean()) - 0.005


def test_a_miscalibrated_int8_model_is_not_shipped_and_the_card_says_why(digits, tmp_path):
    # Calibrated on images 16 times darker than real ones: every activation range is too narrow.
    dark = (digits.train_images // 16).astype(np.uint8)
    path = export(digits, tmp_path / "digits", calibration_images=dark)
    assert not (path / "model.tflite").exists()
    assert not [p for p in path.iterdir() if p.name.endswith(".tmp")]
    section = json.loads((path / "assets.extra" / "model_card.json").read_text())["int8"]
    assert section["shipped"] is False
    assert section["accuracy"] < section["float_accuracy"] - 0.005
    assert "not shipped: int8 accuracy" in section["reason"] and "points below the float model's" in section["reason"]
    assert "tolerance 0.50 points" in section["reason"]


def test_the_tolerance_decides(digits, tmp_path):
    """A generous tolerance ships the same mis-calibrated model the default refuses."""
    dark = (digits.train_images // 16).astype(np.uint8)
    path = export(digits, tmp_path / "digits", calibration_images=dark, max_loss=1.0)
    section = json.loads((path / "assets.extra" / "model_card.json").read_text())["int8"]
    assert section["shipped"] is True and (path / "model.tflite").is_file() and section["max_loss"] == 1.0


def test_tolerance_is_a_gate_threshold():
    from ingot.errors import ConfigError
    from ingot.evaluate.gate import GateThresholds

    assert GateThresholds().int8_max_loss == 0.005
    assert GateThresholds.from_dict({"int8_max_loss": 0.01}).int8_max_loss == 0.01
    with pytest.raises(ConfigError, match="int8_max_loss"):
        GateThresholds(int8_max_loss=1.5)


def test_published_version_carries_the_int8_model_in_its_manifest(exported, tmp_path):
    from ingot import repository
    from ingot.export.publishing import publish

    published = publish(exported, tmp_path / "repo", "digits")
    version_dir = tmp_path / "repo" / "digits" / str(published.version)
    assert (version_dir / "model.tflite").read_bytes() == (exported / "model.tflite").read_bytes()
    manifest = (version_dir / repository.MANIFEST_FILE).read_text()
    assert "  model.tflite\n" in manifest
    repository.verify_manifest(str(version_dir))
