"""The SavedModel serving contract (docs/architecture.md, section 3).

Two signatures over one Keras model, preprocessing always inside the graph:
- `serving_default`: `images` uint8 [batch, H, W, 3];
- `serving_bytes`: `image_bytes` string [batch] (JPEG/PNG/GIF/BMP of any size), decoded and
  resized by `ingot.data.preprocess.decode_and_resize`, the very function training uses, so training and
  serving cannot disagree on how bytes become pixels.
Both return `probabilities` float32 [batch, C], `class_ids` int64 [batch], `class_names` string
[batch]. A third, `serving_embedding` (`ingot.export.embedding`), returns the penultimate layer's
`embedding` float32 [batch, d] for the drift monitor. Beside them, `assets.extra/` holds TF Serving's warm-up records (replayed while a
server loads the version, so the first real request is not the slow one) and the model card.

The export is written to a sibling temp directory and renamed into place, so a failed export
leaves nothing behind. It targets a local (or mounted, e.g. /gcs/...) path.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ingot.errors import IngotError, ModelError
from ingot.evaluate.drift import CARD_KEY as DRIFT_BASELINE_KEY
from ingot.protocol.signatures import (  # noqa: F401 - OUTPUT_KEYS is re-exported by ingot.export
    BYTES_INPUT,
    CLASS_IDS,
    CLASS_NAMES,
    IMAGES_INPUT,
    OUTPUT_KEYS,
    PROBABILITIES,
    SERVING_BYTES,
    SERVING_DEFAULT,
    SERVING_EMBEDDING,
)
from ingot.repository import ASSETS_EXTRA, MODEL_CARD_PATH, WARMUP_PATH

if TYPE_CHECKING:
    from ingot.export.tflite import Int8Plan

# What the caller must supply; export adds class_names, input_size, created_at, versions. The drift
# baseline is `DriftBaseline.to_card()`: the one baseline a card carries.
REQUIRED_CARD_KEYS = ("name", "architecture", "training_config", "data_hash", "metrics", DRIFT_BASELINE_KEY)
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many warm-up records
# Warm-up record batch sizes unless the recipe names others (TrainConfig.warmup_batch_sizes): on
# CPU only a signature's first call is slow (MobileNetV2: 0.5 s, then batch 12 at 200 ms against a
# steady 179 ms, batch 32 at 782 ms against 716 ms), so larger records only lengthen every load.
DEFAULT_WARMUP_BATCH_SIZES = (1,)
SUPPORTED_FORMATS = "JPEG, PNG, GIF or BMP"
MODEL_CARD_FILE = MODEL_CARD_PATH
WARMUP_FILE = WARMUP_PATH


def _check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ModelError(f"image_size={image_size!r} must be (height, width)") from None
    if height < 1 or width < 1:
        raise ModelError(f"image_size={image_size!r} must be positive")
    return height, width


def _check_model(model: Any, class_names: Sequence[str], image_size: tuple[int, int]) -> None:
    input_shape = tuple(getattr(model, "input_shape", ()) or ())
    if len(input_shape) != 4 or input_shape[3] != 3:
        raise ModelError(f"model input shape {input_shape} is not [batch, H, W, 3]")
    for got, want, axis in zip(input_shape[1:3], image_size, ("height", "width")):
        if got is not None and int(got) != want:
            raise ModelError(
                f"model input {axis} is {got} but image_size says {want}; export with the model's input size"
            )
    output_shape = tuple(getattr(model, "output_shape", ()) or ())
    if len(output_shape) != 2 or output_shape[1] != len(class_names):
        raise ModelError(
            f"model output shape {output_shape} does not match {len(class_names)} class names; "
            "expected [batch, number of classes]"
        )


def _check_class_names(class_names: Sequence[str]) -> list[str]:
    names = [str(name) for name in class_names]
    if len(names) < 2:
        raise ModelError(f"need at least two class names, got {names}")
    if len(set(names)) != len(names):
        raise ModelError(f"class names must be unique, got {names}")
    return names


def build_model_card(
    model_card: dict[str, Any], *, class_names: Sequence[str], image_size: tuple[int, int]
) -> dict[str, Any]:
    """Validate the caller's card and add what export knows: class names, input size, creation
    time (UTC), framework versions, and `version: None` (publish sets it)."""
    import keras
    import tensorflow as tf

    if not isinstance(model_card, dict):
        raise ModelError(f"model_card must be a dict, got {type(model_card).__name__}")
    missing = [key for key in REQUIRED_CARD_KEYS if key not in model_card]
    if missing:
        raise ModelError(
            f"model card is missing required key(s) {', '.join(missing)}; required: {', '.join(REQUIRED_CARD_KEYS)}"
        )
    metrics = model_card["metrics"]
    if not isinstance(metrics, dict) or "accuracy" not in metrics or "per_class" not in metrics:
        raise ModelError(
            "model card metrics must hold overall and per-class results (keys 'accuracy' and "
            "'per_class', as in EvaluationReport.to_dict())"
        )
    if set(metrics["per_class"]) != set(class_names):
        raise ModelError(
            f"model card per-class metrics cover {sorted(metrics['per_class'])} but the model's "
            f"classes are {list(class_names)}"
        )
    for key, value in (("class_names", list(class_names)), ("input_size", list(image_size))):
        if key in model_card and list(model_card[key]) != value:
            raise ModelError(f"model card {key}={model_card[key]!r} contradicts the export's {value!r}")
    card = dict(model_card)
    card.update(
        version=None,
        class_names=list(class_names),
        input_size=list(image_size),
        signatures=[SERVING_DEFAULT, SERVING_BYTES, SERVING_EMBEDDING],
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tensorflow_version=tf.__version__,
        keras_version=keras.__version__,
    )
    try:
        json.dumps(card, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ModelError(f"model card is not JSON-serializable: {err}") from None
    return card


def decode_image_batch(image_bytes: Any, image_size: tuple[int, int]) -> Any:
    """`serving_bytes`' decoding: string [batch] of encoded images -> uint8 [batch, H, W, 3], with the
    format check that names the offending batch positions. The graph runs it; so does the int8
    path of `ingot serve` (`ingot.serving.tflite`), so both turn the same bytes into the same pixels."""
    import tensorflow as tf

    from ingot.data.preprocess import decode_and_resize

    height, width = image_size
    # Magic numbers of the formats the contract accepts, checked per element so the error
    # names the offending batch positions instead of failing deep inside map_fn.
    known = tf.reduce_any(
        tf.stack(
            [
                tf.equal(tf.strings.substr(image_bytes, 0, len(magic)), magic)
                for magic in (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")
            ]
        ),
        axis=0,
    )
    check = tf.debugging.Assert(
        tf.reduce_all(known),
        [
            f"serving_bytes: image_bytes must hold {SUPPORTED_FORMATS} encoded images; "
            "these batch positions hold something else:",
            tf.reshape(tf.where(tf.logical_not(known)), [-1]),
        ],
        summarize=16,
    )
    with tf.control_dependencies([check]):
        image_bytes = tf.identity(image_bytes)
    return tf.map_fn(
        lambda encoded: decode_and_resize(encoded, (height, width)),
        image_bytes,
        fn_output_signature=tf.TensorSpec([height, width, 3], tf.uint8),
    )


def _serving_module(model: Any, class_names: list[str], image_size: tuple[int, int]) -> Any:
    """A tf.Module exposing the two serving functions. The Keras model is captured by closure
    and only its variables are tracked, so the optimizer's slots stay out of the SavedModel."""
    import tensorflow as tf

    height, width = image_size
    num_classes = len(class_names)

    def outputs(images: Any) -> dict[str, Any]:
        names = tf.constant(class_names, dtype=tf.string)

        def predict() -> Any:
            return tf.cast(model(tf.cast(images, tf.float32), training=False), tf.float32)

        # An empty batch skips the model (some CPU kernels reject batch 0) and yields empty outputs.
        probabilities = tf.cond(
            tf.shape(images)[0] > 0, predict, lambda: tf.zeros([0, num_classes], tf.float32)
        )
        probabilities = tf.ensure_shape(probabilities, [None, num_classes])
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            PROBABILITIES: probabilities,
            CLASS_IDS: class_ids,
            CLASS_NAMES: tf.gather(names, class_ids),
        }

    def serve_images(images: Any) -> dict[str, Any]:
        return outputs(images)

    def serve_bytes(image_bytes: Any) -> dict[str, Any]:
        return outputs(decode_image_batch(image_bytes, (height, width)))

    module = tf.Module(name="ingot_classifier")
    module.model_variables = list(model.variables)
    module.serve_images = tf.function(
        serve_images, input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8, name=IMAGES_INPUT)]
    )
    module.serve_bytes = tf.function(
        serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)]
    )
    from ingot.export.embedding import embedding_function

    module.serve_embedding = embedding_function(model, image_size)
    return module


def _noise_png(image_size: tuple[int, int], seed: int = 0) -> bytes:
    import tensorflow as tf

    pixels = np.random.default_rng(seed).integers(0, 256, size=(*image_size, 3), dtype=np.uint8)
    return tf.io.encode_png(pixels).numpy()


def warmup_requests(
    model_name: str, image_size: tuple[int, int], batch_sizes: Sequence[int]
) -> list[Any]:
    """PredictionLog records for both answering signatures at each batch size (zeros for
    `images`, a noise PNG for `image_bytes`) and one for `serving_embedding`, in the form TF
    Serving replays while loading a version."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    sizes = list(batch_sizes)
    if not sizes or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1 for b in sizes):
        raise ModelError(f"warmup_batch_sizes={sizes!r} must be positive integers")
    if 2 * len(sizes) + 1 > MAX_WARMUP_RECORDS:
        raise ModelError(
            f"{2 * len(sizes) + 1} warm-up records requested; TF Serving reads at most {MAX_WARMUP_RECORDS}"
        )
    png = _noise_png(image_size)
    records = []
    for batch in sizes:
        for signature, key, value in (
            (SERVING_DEFAULT, IMAGES_INPUT, np.zeros((int(batch), *image_size, 3), dtype=np.uint8)),
            (SERVING_BYTES, BYTES_INPUT, np.array([png] * int(batch), dtype=object)),
        ):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            request.inputs[key].CopyFrom(
                tf.make_tensor_proto(value, dtype=tf.uint8 if key == IMAGES_INPUT else tf.string)
            )
            records.append(
                prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            )
    from ingot.export.embedding import embedding_warmup_requests

    # The embedding feeds the drift monitor, not callers: one record proves it runs at load.
    return records + embedding_warmup_requests(model_name, image_size, [1])


def export_saved_model(
    model: Any,
    export_dir: str | os.PathLike[str],
    *,
    class_names: Sequence[str],
    image_size: Sequence[int],
    model_card: dict[str, Any],
    warmup_batch_sizes: Sequence[int] = DEFAULT_WARMUP_BATCH_SIZES,
    reference_images: np.ndarray | None = None,
    int8: Int8Plan | None = None,
) -> Path:
    """Write the serving SavedModel, warm-up records and model card to `export_dir`.

    `export_dir` must not exist or be empty. Everything is written to a sibling temp directory
    first and renamed at the end, so on any error nothing is left at `export_dir`.
    `reference_images` (the validation split, uint8) give the embedding reference sample the drift
    monitor compares captured inputs with (`ingot.export.embedding.write_reference`).
    `int8` builds and judges the int8 `model.tflite` beside the SavedModel (`ingot.export.tflite`);
    the card's `int8` section records the outcome either way.
    """
    import tensorflow as tf

    names = _check_class_names(class_names)
    size = _check_image_size(image_size)
    _check_model(model, names, size)
    card = build_model_card(model_card, class_names=names, image_size=size)
    records = warmup_requests(str(card["name"]), size, warmup_batch_sizes)

    target = Path(export_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ModelError(f"export directory {target} already exists and is not empty; choose a new one")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".tmp-export-{uuid.uuid4().hex}"
    try:
        module = _serving_module(model, names, size)
        tf.saved_model.save(
            module,
            str(staging),
            signatures={SERVING_DEFAULT: module.serve_images, SERVING_BYTES: module.serve_bytes,
                        SERVING_EMBEDDING: module.serve_embedding},
        )
        (staging / ASSETS_EXTRA).mkdir(exist_ok=True)
        with tf.io.TFRecordWriter(str(staging / WARMUP_PATH)) as writer:
            for record in records:
                writer.write(record.SerializeToString())
        if reference_images is not None:
            from ingot.export.embedding import CARD_KEY, write_reference

            card[CARD_KEY] = write_reference(model, reference_images, staging / ASSETS_EXTRA)
        if int8 is not None:
            from ingot.export.tflite import CARD_KEY as INT8_KEY
            from ingot.export.tflite import add_int8_model

            card[INT8_KEY] = add_int8_model(model, staging, int8)
        (staging / MODEL_CARD_PATH).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        if target.exists():
            target.rmdir()  # empty, checked above (e.g. a pre-created pipeline output directory)
        os.rename(staging, target)
    except IngotError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelError(f"exporting the SavedModel to {target} failed: {err}") from err
    return target
