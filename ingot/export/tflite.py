"""The int8 model beside every SavedModel: `model.tflite` in the version directory.

TF Serving's `--prefer_tflite_model` (and `ingot serve --prefer_tflite_model`) looks for
`model.tflite` next to `saved_model.pb`. The file is a full-integer model (post-training
quantization, `TFLITE_BUILTINS_INT8`) calibrated on a few hundred training images. It is converted
from the Keras model itself, not from the exported signatures: those carry `EnsureShape` and the
string gather behind `class_names`, which the converter only takes as Flex (TensorFlow) ops.

Its contract matches `serving_default`'s input: `images` uint8 [batch, H, W, 3] with the
quantization (scale 1, zero point 0), so the raw pixels go in unchanged and the model's own
normalization (e.g. its Rescaling layer) runs inside; the output is `probabilities` float32
[batch, C]. Class ids and names are derived by the server, as the graph does.

The int8 model ships only if it holds up: the evaluate step scores it on the float model's test
rows (`ingot.evaluate.paired.compare_paired`, exact McNemar) and records both in the model card's
`int8` section, with sizes and latency. If its accuracy is more than `max_loss` below the float
model's on those rows (the observed difference: the float model ships anyway, so the int8 one must
show it is as good, not merely not credibly worse), the file is removed and the card says why.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ingot.errors import ModelError
from ingot.evaluate.gate import DEFAULT_INT8_MAX_LOSS
from ingot.repository import TFLITE_PATH

CARD_KEY = "int8"
DEFAULT_CALIBRATION_IMAGES = 300  # the TFLite docs ask for 100-500 representative samples
LATENCY_ITERATIONS = 50
QUANTIZATION = "full integer (TFLITE_BUILTINS_INT8), uint8 input (scale 1, zero point 0), float32 output"


@dataclass
class Int8Plan:
    """What the export needs to build and judge the int8 model: calibration images from the
    training split, and the float model's test rows (images, labels, its probabilities)."""

    calibration_images: np.ndarray  # uint8 [N, H, W, 3], training images
    test_images: np.ndarray  # uint8 [M, H, W, 3]
    test_labels: np.ndarray  # int [M]
    float_probabilities: np.ndarray  # float32 [M, C]: the float model on test_images
    max_loss: float = DEFAULT_INT8_MAX_LOSS  # GateThresholds.int8_max_loss
    alpha: float = 0.05
    seed: int = 0


def calibration_sample(images: np.ndarray, rows: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """At most `rows` images chosen with a fixed seed (all of them when there are fewer)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0 or images.shape[-1] != 3:
        raise ModelError(f"calibration images must be a non-empty uint8 [N, H, W, 3] array, got {list(images.shape)}")
    if images.shape[0] <= rows:
        return images
    picked = np.random.default_rng(seed).choice(images.shape[0], size=rows, replace=False)
    return images[np.sort(picked)]


def _representative(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    """One image per step, as float32 0..255 (what the Keras model takes). One extra copy of the
    first image has a black and a white pixel, so the input's calibrated range is exactly 0..255:
    scale 1 and zero point 0, i.e. the uint8 input takes raw pixels, as serving_default does."""
    for image in images:
        yield [image[np.newaxis].astype(np.float32)]
    pinned = images[:1].astype(np.float32).copy()
    pinned[0, 0, 0, :] = 0.0
    pinned[0, 0, -1, :] = 255.0
    yield [pinned]


def convert_int8(model: Any, calibration_images: np.ndarray) -> bytes:
    """The full-integer TFLite flatbuffer of a Keras model (input float 0..255 [batch, H, W, 3])."""
    import tensorflow as tf

    images = np.asarray(calibration_images)
    if images.dtype != np.uint8:
        raise ModelError(f"calibration images must be uint8, got {images.dtype}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: _representative(images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.float32
    import warnings

    try:
        # Keras prints the intermediate SavedModel's endpoints; the converter warns about the uint8
        # input, whose range the representative data sets (see above). Neither is news to a user.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            flatbuffer = converter.convert()
    except Exception as err:
        raise ModelError(f"int8 conversion failed: {str(err).strip().splitlines()[0] if str(err).strip() else err}") from None
    Int8Model(model_content=flatbuffer)  # checks the input contract
    return bytes(flatbuffer)


class Int8Model:
    """A LiteRT interpreter over the int8 model: uint8 images in, float32 probabilities out.

    Not thread-safe (one interpreter runs one call at a time); the server keeps a pool. The
    interpreter is resized when the batch size changes and kept at that size."""

    def __init__(self, *, model_path: str | os.PathLike[str] | None = None, model_content: bytes | None = None,
                 num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if (model_path is None) == (model_content is None):
            raise ModelError("give exactly one of model_path and model_content")
        try:
            if model_path is not None:
                self.interpreter = Interpreter(model_path=os.fspath(model_path), num_threads=num_threads)
            else:
                self.interpreter = Interpreter(model_content=model_content, num_threads=num_threads)
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"cannot load the TFLite model: {err}") from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"the TFLite model has {len(inputs)} inputs and {len(outputs)} outputs; expected 1 and 1")
        self._input, self._output = inputs[0], outputs[0]
        shape = [int(v) for v in self._input["shape_signature"]]
        if len(shape) != 4 or shape[3] != 3 or self._input["dtype"] != np.uint8:
            raise ModelError(f"the TFLite model's input is {np.dtype(self._input['dtype']).name}{shape}; "
                             "expected uint8 [batch, H, W, 3]")
        scale, zero_point = self._input["quantization"]
        if not (np.isclose(scale, 1.0) and int(zero_point) == 0):
            raise ModelError(f"the TFLite model's input quantization is (scale {scale}, zero point {zero_point}); "
                             "expected (1, 0) so raw uint8 pixels go in unchanged")
        if self._output["dtype"] != np.float32 or len(self._output["shape_signature"]) != 2:
            raise ModelError("the TFLite model's output must be float32 [batch, classes]")
        self.image_size = (shape[1], shape[2])
        self.num_classes = int(self._output["shape_signature"][1])
        self._batch = -1

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities float32 [N, C] for uint8 images [N, H, W, 3] (N may be 0)."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if images.shape[0] == 0:
            return np.zeros((0, self.num_classes), np.float32)
        if images.shape[0] != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"], list(images.shape), strict=True)
            self.interpreter.allocate_tensors()
            self._batch = images.shape[0]
        self.interpreter.set_tensor(self._input["index"], images)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self._output["index"]), dtype=np.float32, copy=True)

    def predict_batched(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        parts = [self.predict(images[start:start + batch_size]) for start in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.num_classes), np.float32)


def percentiles_ms(call: Any, iterations: int = LATENCY_ITERATIONS) -> dict[str, float]:
    """p50/p99 wall time of `call()` in milliseconds, after two untimed calls."""
    call()
    call()
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000.0)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}


def directory_bytes(path: str | os.PathLike[str], *, skip: tuple[str, ...] = ()) -> int:
    """Bytes of the files under `path`, leaving out the relative paths that start with `skip`."""
    root = Path(path)
    return sum(f.stat().st_size for f in root.rglob("*")
               if f.is_file() and not str(f.relative_to(root)).startswith(skip))


def add_int8_model(model: Any, version_dir: str | os.PathLike[str], plan: Int8Plan) -> dict[str, Any]:
    """Convert, score against the float model on the plan's test rows, and write `model.tflite`
    into `version_dir` (a staging SavedModel directory, before it is published) only if it loses
    at most `plan.max_loss`. Returns the model card's `int8` section; never raises for a model that does
    not convert or does not hold up (the float model ships either way, and the card says why)."""
    import tensorflow as tf

    from ingot.evaluate.paired import class_ids, compare_paired
    from ingot.repository import ASSETS_EXTRA

    target = Path(version_dir) / TFLITE_PATH
    labels = class_ids(plan.test_labels, name="test labels")
    float_ids = class_ids(plan.float_probabilities, labels.size, name="float predictions")
    section: dict[str, Any] = {
        "file": TFLITE_PATH, "shipped": False, "reason": None, "quantization": QUANTIZATION,
        "max_loss": float(plan.max_loss), "test_rows": int(labels.size),
        "float_accuracy": float((float_ids == labels).mean()) if labels.size else None,
        "size_bytes": {"float_saved_model": directory_bytes(version_dir, skip=(ASSETS_EXTRA,))},
    }
    try:
        calibration = calibration_sample(plan.calibration_images, seed=plan.seed)
        section["calibration_images"] = int(calibration.shape[0])
        flatbuffer = convert_int8(model, calibration)
        runner = Int8Model(model_content=flatbuffer)
    except ModelError as err:
        section["reason"] = f"not shipped: {err}"
        return section
    import ai_edge_litert

    section["litert_version"] = getattr(ai_edge_litert, "__version__", None)
    section["size_bytes"]["int8"] = len(flatbuffer)
    probabilities = runner.predict_batched(np.asarray(plan.test_images, np.uint8))
    int8_ids = class_ids(probabilities, labels.size, name="int8 predictions")
    comparison = compare_paired(labels, float_ids, int8_ids, tolerance=float(plan.max_loss), alpha=plan.alpha,
                                metric="accuracy", seed=plan.seed)
    section.update(
        accuracy=comparison.candidate, difference=comparison.difference,
        agreement=float((int8_ids == float_ids).mean()), comparison=comparison.to_dict(),
    )
    one = np.asarray(plan.test_images[:1], np.uint8)
    float_call = tf.function(lambda x: model(tf.cast(x, tf.float32), training=False))
    section["latency_ms"] = {
        "batch": 1, "threads": "interpreter 1 thread; TensorFlow default",
        "float": percentiles_ms(lambda: float_call(one).numpy()),
        "int8": percentiles_ms(lambda: runner.predict(one)),
    }
    loss = -comparison.difference
    if loss > plan.max_loss + 1e-12:
        section["reason"] = (
            f"not shipped: int8 accuracy {comparison.candidate:.4f} is {100 * loss:.2f} points below the float "
            f"model's {comparison.champion:.4f} on the same {labels.size} test rows (tolerance "
            f"{100 * plan.max_loss:.2f} points; {comparison.text()})")
        return section
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(flatbuffer)
    os.replace(tmp, target)
    section["shipped"] = True
    return section


def int8_summary(version_dir: str | os.PathLike[str]) -> str:
    """One line on the int8 model of an export, from its model card."""
    from ingot.repository import read_model_card

    section = read_model_card(os.fspath(version_dir)).get(CARD_KEY)
    if not section:
        return "int8: none (exported without an int8 plan)"
    if not section.get("shipped"):
        return f"int8: {section.get('reason')}"
    sizes, latency = section["size_bytes"], section["latency_ms"]
    return (f"int8: {TFLITE_PATH} shipped, accuracy {section['accuracy']:.4f} vs float {section['float_accuracy']:.4f} "
            f"({100 * section['difference']:+.2f} points, tolerance {100 * section['max_loss']:.2f}), "
            f"{sizes['int8'] / 1e6:.2f} MB vs {sizes['float_saved_model'] / 1e6:.2f} MB, batch-1 p50 "
            f"{latency['int8']['p50']:.2f} ms vs {latency['float']['p50']:.2f} ms")
