"""Export refuses bad input clearly and leaves nothing behind when it fails."""

from __future__ import annotations

import pytest

from ingot.errors import ModelError
from ingot.export.saved_model import export_saved_model

from .conftest import CLASSES, SIZE, model_card_for


@pytest.fixture(scope="module")
def card(trained_model):
    return model_card_for(trained_model)


def test_missing_card_keys_are_named(trained_model, card, tmp_path):
    incomplete = {k: v for k, v in card.items() if k not in ("data_hash", "metrics")}
    with pytest.raises(ModelError, match="missing required key.*data_hash, metrics"):
        export_saved_model(trained_model, tmp_path / "m", class_names=CLASSES, image_size=SIZE, model_card=incomplete)
    assert not (tmp_path / "m").exists()


def test_metrics_must_cover_the_model_classes(trained_model, card, tmp_path):
    wrong = dict(card, metrics=dict(card["metrics"], per_class={"red": {}, "green": {}}))
    with pytest.raises(ModelError, match="per-class metrics"):
        export_saved_model(trained_model, tmp_path / "m", class_names=CLASSES, image_size=SIZE, model_card=wrong)


def test_class_count_and_input_size_must_match_the_model(trained_model, card, tmp_path):
    with pytest.raises(ModelError, match="does not match 2 class names"):
        export_saved_model(trained_model, tmp_path / "m", class_names=["a", "b"], image_size=SIZE, model_card=card)
    with pytest.raises(ModelError, match="input height is 16 but image_size says 32"):
        export_saved_model(trained_model, tmp_path / "m", class_names=CLASSES, image_size=(32, 16), model_card=card)


def test_too_many_warmup_records_are_refused(trained_model, card, tmp_path):
    with pytest.raises(ModelError, match="at most 1000"):
        export_saved_model(
            trained_model, tmp_path / "m", class_names=CLASSES, image_size=SIZE, model_card=card,
            warmup_batch_sizes=range(1, 502),
        )


def test_a_non_empty_export_dir_is_refused(trained_model, card, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine")
    with pytest.raises(ModelError, match="not empty"):
        export_saved_model(trained_model, tmp_path / "m", class_names=CLASSES, image_size=SIZE, model_card=card)
    assert (tmp_path / "m" / "keep.txt").read_text() == "mine"


def test_an_empty_pre_created_export_dir_is_used(trained_model, card, tmp_path):
    (tmp_path / "m").mkdir()  # as pipeline runners pre-create output directories
    path = export_saved_model(
        trained_model, tmp_path / "m", class_names=CLASSES, image_size=SIZE, model_card=card, warmup_batch_sizes=(1,)
    )
    assert (path / "saved_model.pb").is_file()


def test_a_failed_export_leaves_nothing(trained_model, card, tmp_path, monkeypatch):
    import tensorflow as tf

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.io, "TFRecordWriter", crash)  # fails after the SavedModel is written
    with pytest.raises(ModelError, match="disk full"):
        export_saved_model(trained_model, tmp_path / "m", class_names=CLASSES, image_size=SIZE, model_card=card)
    assert list(tmp_path.iterdir()) == []
