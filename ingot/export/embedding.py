"""The `serving_embedding` signature: uint8 images [batch, H, W, 3] -> `embedding` float32
[batch, d], the penultimate layer (the input of the classifier's softmax head). The drift monitor
calls it through the model server so that it needs no TensorFlow itself (`ingot.monitor.embedding`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ingot.errors import ModelError
from ingot.protocol.signatures import EMBEDDING, IMAGES_INPUT, PROBABILITIES, SERVING_EMBEDDING

REFERENCE_ROWS = 1000   # at most this many validation embeddings in assets.extra/, chosen with a fixed seed
REFERENCE_SEED = 0


def embedding_model(model: Any) -> Any:
    """A Keras model sharing `model`'s layers whose output is the input of its softmax head (the
    layer named `probabilities` in the builders, else the last layer)."""
    import keras

    try:
        head = model.get_layer(PROBABILITIES)
    except ValueError:
        head = model.layers[-1]
    try:
        features = head.input
    except (AttributeError, ValueError) as err:
        raise ModelError(f"cannot find the penultimate layer of model {model.name!r}: {err}") from None
    return keras.Model(model.inputs, features, name=f"{model.name}_embedding")


def embedding_function(model: Any, image_size: tuple[int, int]) -> Any:
    """The tf.function exported as `serving_embedding` (empty batches skip the model)."""
    import tensorflow as tf

    encoder = embedding_model(model)
    width = int(encoder.output.shape[-1])
    height, image_width = image_size

    def serve_embedding(images: Any) -> dict[str, Any]:
        def embed() -> Any:
            features = encoder(tf.cast(images, tf.float32), training=False)
            return tf.cast(tf.reshape(features, [tf.shape(images)[0], width]), tf.float32)

        embedding = tf.cond(tf.shape(images)[0] > 0, embed, lambda: tf.zeros([0, width], tf.float32))
        return {EMBEDDING: tf.ensure_shape(embedding, [None, width])}

    return tf.function(serve_embedding, input_signature=[
        tf.TensorSpec([None, height, image_width, 3], tf.uint8, name=IMAGES_INPUT)])


def embedding_warmup_requests(model_name: str, image_size: tuple[int, int], batch_sizes: Sequence[int]) -> list[Any]:
    """PredictionLog records for `serving_embedding` at each batch size (zero images)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    records = []
    for batch in batch_sizes:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = SERVING_EMBEDDING
        request.inputs[IMAGES_INPUT].CopyFrom(tf.make_tensor_proto(
            np.zeros((int(batch), *image_size, 3), dtype=np.uint8), dtype=tf.uint8))
        records.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return records


def reference_sample(values: np.ndarray, rows: int = REFERENCE_ROWS, seed: int = REFERENCE_SEED) -> np.ndarray:
    """At most `rows` rows chosen with a fixed seed (kept in their original order)."""
    if values.shape[0] <= rows:
        return values
    return values[np.sort(np.random.default_rng(seed).choice(values.shape[0], size=rows, replace=False))]


CARD_KEY = "embedding_reference"


def write_reference(model: Any, images: np.ndarray, assets_dir: Any, *, rows: int = REFERENCE_ROWS,
                    seed: int = REFERENCE_SEED, batch_size: int = 256) -> dict[str, Any]:
    """Embed a seeded sample of at most `rows` validation images (uint8 [N, H, W, 3]) with the
    model's penultimate layer, write it as `embedding_reference.npy` in `assets_dir`, and return
    the model card's `embedding_reference` entry (file, rows, dimension, seed)."""
    from pathlib import Path

    import tensorflow as tf

    from ingot.protocol.signatures import EMBEDDING_REFERENCE_FILE

    pixels = reference_sample(np.asarray(images), rows, seed)
    if pixels.ndim != 4 or pixels.shape[0] == 0:
        raise ModelError(f"reference images must be a non-empty uint8 [N, H, W, 3] array, got {pixels.shape}")
    encoder = embedding_model(model)
    parts = [np.asarray(encoder(tf.cast(pixels[start:start + batch_size], tf.float32), training=False),
                        dtype=np.float32).reshape(len(pixels[start:start + batch_size]), -1)
             for start in range(0, len(pixels), batch_size)]
    embeddings = np.concatenate(parts)
    np.save(Path(assets_dir) / EMBEDDING_REFERENCE_FILE, embeddings, allow_pickle=False)
    return {"file": EMBEDDING_REFERENCE_FILE, "rows": int(embeddings.shape[0]),
            "dimension": int(embeddings.shape[1]), "seed": seed, "max_rows": rows, "split": "validation"}
