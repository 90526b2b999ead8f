"""The SavedModel serving contract (docs/architecture.md, section 3), checked on a reloaded export."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from ingot.evaluate.drift import DriftBaseline

from .conftest import CLASSES, SIZE, colour_images, model_card_for

H, W = SIZE
C = len(CLASSES)


@pytest.fixture(scope="module")
def loaded(exported):
    import tensorflow as tf

    return tf.saved_model.load(str(exported[0]))


def encode(image: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_layout(exported):
    path = exported[0]
    assert (path / "saved_model.pb").is_file()
    assert (path / "variables").is_dir()
    assert (path / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert (path / "assets.extra" / "model_card.json").is_file()
    assert not list(path.parent.glob(".tmp-export-*"))


def test_signature_names_inputs_and_outputs(loaded):
    import tensorflow as tf

    assert set(loaded.signatures) == {"serving_default", "serving_bytes", "serving_embedding"}
    expected_outputs = {
        "probabilities": (tf.float32, [None, C]),
        "class_ids": (tf.int64, [None]),
        "class_names": (tf.string, [None]),
    }
    inputs = {
        "serving_default": ("images", tf.uint8, [None, H, W, 3]),
        "serving_bytes": ("image_bytes", tf.string, [None]),
    }
    for name, (key, dtype, shape) in inputs.items():
        signature = loaded.signatures[name]
        args, kwargs = signature.structured_input_signature
        assert args == ()
        assert list(kwargs) == [key]
        assert kwargs[key].dtype == dtype
        assert kwargs[key].shape.as_list() == shape
        outputs = signature.structured_outputs
        assert set(outputs) == set(expected_outputs)
        for out_key, (out_dtype, out_shape) in expected_outputs.items():
            assert outputs[out_key].dtype == out_dtype, (name, out_key)
            assert outputs[out_key].shape.as_list() == out_shape, (name, out_key)


def test_serving_default_matches_the_keras_model(loaded, trained_model):
    import tensorflow as tf

    images = colour_images([0, 1, 2, 2, 0], seed=11)
    outputs = loaded.signatures["serving_default"](images=tf.constant(images))
    expected = trained_model.predict(images.astype("float32"), verbose=0)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    assert outputs["class_ids"].numpy().tolist() == [0, 1, 2, 2, 0]
    assert [n.decode() for n in outputs["class_names"].numpy()] == ["red", "green", "blue", "blue", "red"]
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)


def test_same_image_as_array_png_and_jpeg_gives_the_same_class(loaded):
    import tensorflow as tf

    images = colour_images([0, 1, 2], seed=21)
    by_array = loaded.signatures["serving_default"](images=tf.constant(images))
    png = [encode(img, "PNG") for img in images]
    jpeg = [encode(img, "JPEG", quality=100) for img in images]
    by_png = loaded.signatures["serving_bytes"](image_bytes=tf.constant(png))
    by_jpeg = loaded.signatures["serving_bytes"](image_bytes=tf.constant(jpeg))

    # PNG is lossless at the model's size: identical pixels, identical probabilities.
    np.testing.assert_array_equal(by_png["probabilities"].numpy(), by_array["probabilities"].numpy())
    np.testing.assert_array_equal(by_png["class_ids"].numpy(), by_array["class_ids"].numpy())
    # JPEG is lossy even at quality 100: same class, probabilities close.
    np.testing.assert_array_equal(by_jpeg["class_ids"].numpy(), by_array["class_ids"].numpy())
    np.testing.assert_allclose(by_jpeg["probabilities"].numpy(), by_array["probabilities"].numpy(), atol=0.05)
    assert by_array["class_ids"].numpy().tolist() == [0, 1, 2]


def test_serving_bytes_accepts_any_size_and_format(loaded):
    import tensorflow as tf

    big_blue = colour_images([2], size=(48, 30), seed=3)[0]
    grey_with_green = np.stack([np.full((20, 20), v, np.uint8) for v in (40, 220, 40)], axis=-1)
    encoded = [
        encode(big_blue, "PNG"),
        encode(big_blue, "BMP"),
        encode(grey_with_green, "GIF"),
        encode(colour_images([0], size=(9, 40), seed=4)[0], "JPEG", quality=95),
    ]
    outputs = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    assert [n.decode() for n in outputs["class_names"].numpy()] == ["blue", "blue", "green", "red"]


def test_undecodable_bytes_raise_a_clear_error_naming_the_formats(loaded):
    import tensorflow as tf

    good = encode(colour_images([0])[0], "PNG")
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([good, b"definitely not an image"]))
    message = str(caught.value)
    assert "image_bytes must hold JPEG, PNG, GIF or BMP encoded images" in message
    assert "[1]" in message  # the offending batch position
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([good[: len(good) // 2]]))  # truncated PNG


def test_empty_batches_give_empty_outputs(loaded):
    import tensorflow as tf

    for name, inputs in (
        ("serving_default", {"images": tf.zeros([0, H, W, 3], tf.uint8)}),
        ("serving_bytes", {"image_bytes": tf.zeros([0], tf.string)}),
    ):
        outputs = loaded.signatures[name](**inputs)
        assert outputs["probabilities"].shape == (0, C)
        assert outputs["class_ids"].shape == (0,)


def test_default_warmup_records_run_each_signature_once(exported, loaded):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported[0] / "assets.extra" / "tf_serving_warmup_requests"
    records = [
        prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        for raw in tf.data.TFRecordDataset(str(path))
    ]
    assert 0 < len(records) <= 1000
    seen = set()
    for record in records:
        assert record.WhichOneof("log_type") == "predict_log"
        request = record.predict_log.request
        assert request.model_spec.name == "colours"
        signature = request.model_spec.signature_name
        key = {"serving_default": "images", "serving_bytes": "image_bytes", "serving_embedding": "images"}[signature]
        assert list(request.inputs) == [key]
        value = tf.make_ndarray(request.inputs[key])
        seen.add((signature, value.shape[0]))
        # Replay it as TF Serving does while loading: it must run and answer per batch row.
        outputs = loaded.signatures[signature](**{key: tf.constant(value)})
        output = "embedding" if signature == "serving_embedding" else "probabilities"
        assert outputs[output].shape[0] == value.shape[0]
    # The default (TrainConfig.warmup_batch_sizes): each signature's first call, at batch 1.
    assert seen == {(s, 1) for s in ("serving_default", "serving_bytes", "serving_embedding")}


def test_warmup_records_cover_the_answering_signatures_at_every_size_asked_for(trained_model, tmp_path):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from ingot.export.saved_model import export_saved_model

    path = export_saved_model(trained_model, tmp_path / "colours", class_names=CLASSES, image_size=SIZE,
                              model_card=model_card_for(trained_model), warmup_batch_sizes=(1, 4, 16))
    records = [prediction_log_pb2.PredictionLog.FromString(raw.numpy()).predict_log.request
               for raw in tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests"))]
    seen = {(r.model_spec.signature_name, tf.make_ndarray(next(iter(r.inputs.values()))).shape[0]) for r in records}
    # The answering signatures at every size; the monitor's embedding once (it proves it loads).
    assert seen == {(s, b) for s in ("serving_default", "serving_bytes") for b in (1, 4, 16)} | {("serving_embedding", 1)}


def test_serving_embedding_returns_the_penultimate_layer(exported, loaded, trained_model):
    """The embedding is the input of the softmax head: the head applied to it gives the probabilities."""
    import tensorflow as tf

    images = colour_images([0, 1, 2, 0, 1, 2])
    signature = loaded.signatures["serving_embedding"]
    args, kwargs = signature.structured_input_signature
    assert list(kwargs) == ["images"] and kwargs["images"].dtype == tf.uint8
    embedding = signature(images=tf.constant(images))["embedding"].numpy()
    assert embedding.dtype == np.float32 and embedding.ndim == 2 and embedding.shape[0] == 6
    assert np.isfinite(embedding).all() and embedding.std() > 0
    head = trained_model.layers[-1](tf.constant(embedding)).numpy()
    probabilities = loaded.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(head, probabilities, atol=1e-5)
    empty = signature(images=tf.zeros([0, H, W, 3], tf.uint8))["embedding"]
    assert empty.shape == (0, embedding.shape[1])
    card = json.loads((exported[0] / "assets.extra" / "model_card.json").read_text())
    assert "serving_embedding" in card["signatures"]


def test_model_card_carries_the_metrics_and_lineage(exported):
    import tensorflow as tf

    path, passed = exported
    card = json.loads((path / "assets.extra" / "model_card.json").read_text())
    assert card["metrics"] == passed["metrics"]
    assert card["metrics"]["per_class"].keys() == set(CLASSES)
    assert card["drift_baseline"] == passed["drift_baseline"]
    assert DriftBaseline.from_card(card) == DriftBaseline.from_card(passed)
    assert "confidence_baseline" not in card  # one drift baseline per card
    for key in ("name", "architecture", "training_config", "data_hash"):
        assert card[key] == passed[key]
    assert card["version"] is None
    assert card["class_names"] == CLASSES
    assert card["input_size"] == list(SIZE)
    assert card["tensorflow_version"] == tf.__version__
    created = datetime.fromisoformat(card["created_at"])
    assert created.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 3600


def test_the_embedding_reference_sample_is_written_with_its_card_entry(trained_model, tmp_path):
    """Validation images given at export: a seeded sample of at most 1,000 embeddings in
    assets.extra/, equal to what serving_embedding answers for those images, described in the card."""
    import tensorflow as tf

    from ingot.export.embedding import REFERENCE_ROWS, reference_sample
    from ingot.export.saved_model import export_saved_model

    images = colour_images([i % 3 for i in range(REFERENCE_ROWS + 30)], seed=5)
    path = export_saved_model(trained_model, tmp_path / "with-reference", class_names=CLASSES, image_size=SIZE,
                              model_card=model_card_for(trained_model), warmup_batch_sizes=(1,),
                              reference_images=images)
    card = json.loads((path / "assets.extra" / "model_card.json").read_text())
    entry = card["embedding_reference"]
    reference = np.load(path / "assets.extra" / entry["file"])
    assert entry["file"] == "embedding_reference.npy"
    assert reference.shape == (REFERENCE_ROWS, entry["dimension"]) and entry["rows"] == REFERENCE_ROWS
    chosen = reference_sample(images)
    assert chosen.shape[0] == REFERENCE_ROWS and np.array_equal(chosen, reference_sample(images))  # seeded
    served = tf.saved_model.load(str(path)).signatures["serving_embedding"](images=tf.constant(chosen[:20]))
    np.testing.assert_allclose(reference[:20], served["embedding"].numpy(), rtol=1e-4, atol=1e-5)
