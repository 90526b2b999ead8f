"""`ingot serve --prefer_tflite_model`: serve a version's int8 `model.tflite` through LiteRT.

TF Serving's flag of the same name loads `model.tflite` from the SavedModel's version directory
instead of `saved_model.pb`, falling back to the SavedModel when there is none; so does Ingot (the
hook is `ModelManager._default_make_servable`). The REST and gRPC API stay the same:

- `serving_default` (`images` uint8 [batch, H, W, 3]) feeds the pixels to the int8 model
  unchanged (its input is quantized with scale 1 and zero point 0, see `ingot.export.tflite`);
- `serving_bytes` (`image_bytes` string [batch]) decodes with the very function the SavedModel's
  graph runs (`ingot.export.saved_model.decode_image_batch`), so bytes become the same pixels;
- both return `probabilities`, `class_ids` (argmax, int64) and `class_names` (from the model
  card, as the graph's gather does).
Signature metadata comes from the version's `saved_model.pb`, so clients see the float model's
SignatureDefs for these two signatures. Other signatures (`serving_embedding`) are not in the int8
model and are not served: point the drift monitor at a float variant.

Each call takes one LiteRT interpreter from a pool (`--num_tflite_pools` x
`--num_tflite_interpreters_per_pool`, single-threaded like TF Serving's); a call waits for a free
one, so the pool size is how many batches run at once.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ingot import repository, storage
from ingot.protocol.signatures import (
    BYTES_INPUT,
    CLASS_IDS,
    CLASS_NAMES,
    IMAGES_INPUT,
    PROBABILITIES,
    SERVING_BYTES,
    SERVING_DEFAULT,
)
from ingot.protocol.status import Code, ServingError
from ingot.protocol.tensors import signature_from_def
from ingot.serving.servable import (
    DEFAULT_SIGNATURE,
    Arrays,
    BatchedRunner,
    DirectRunner,
    Servable,
    serving_error_from,
)

SERVED_SIGNATURES = (SERVING_DEFAULT, SERVING_BYTES)


def has_tflite_model(path: str) -> bool:
    return storage.exists(storage.join(path, repository.TFLITE_PATH))


class InterpreterPool:
    """`size` LiteRT interpreters over one model file, lent one call at a time."""

    def __init__(self, model_path: str, size: int) -> None:
        from ingot.errors import ModelError
        from ingot.export.tflite import Int8Model

        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        try:
            self.models = [Int8Model(model_path=model_path, num_threads=1) for _ in range(max(1, size))]
        except ModelError as err:
            raise ServingError(Code.INVALID_ARGUMENT, f"{model_path}: {err}") from None
        for model in self.models:
            self._free.put(model)

    @contextmanager
    def lend(self) -> Iterator[Any]:
        model = self._free.get()
        try:
            yield model
        finally:
            self._free.put(model)


class TfliteServable(Servable):
    """A version served from its `model.tflite`; same interface as `Servable`."""

    def __init__(self, *args: Any, interpreters: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.interpreters = max(1, int(interpreters))
        self.pool: InterpreterPool | None = None
        self._decode: Any = None

    def load(self) -> None:
        from tensorflow.core.protobuf import saved_model_pb2

        pb_path = storage.join(self.path, "saved_model.pb")
        if not storage.exists(pb_path):
            raise ServingError(Code.NOT_FOUND, f"no saved_model.pb in {self.path} (it holds the signatures "
                               f"{repository.TFLITE_PATH} is served under)")
        saved = saved_model_pb2.SavedModel()
        try:
            with storage.open_file(pb_path, "rb") as handle:
                saved.ParseFromString(handle.read())
            card = repository.read_model_card(self.path)
            names = [str(name) for name in card["class_names"]]
            height, width = (int(v) for v in card["input_size"])
        except Exception as err:
            raise ServingError(Code.DATA_LOSS, f"cannot read the signatures and model card of {self.path}: {err}") from None
        graphs = [g for g in saved.meta_graphs if "serve" in g.meta_info_def.tags] or list(saved.meta_graphs)
        defs = graphs[0].signature_def if graphs else {}
        missing = [name for name in SERVED_SIGNATURES if name not in defs]
        if missing:
            raise ServingError(Code.INVALID_ARGUMENT, f"the SavedModel at {self.path} lacks {', '.join(missing)}")
        self.pool = InterpreterPool(storage.join(self.path, repository.TFLITE_PATH), self.interpreters)
        model = self.pool.models[0]
        if model.image_size != (height, width) or model.num_classes != len(names):
            raise ServingError(Code.INVALID_ARGUMENT, f"{repository.TFLITE_PATH} takes {list(model.image_size)} images "
                               f"into {model.num_classes} classes; the model card says {[height, width]} and "
                               f"{len(names)} classes")
        self._class_names = np.array([name.encode() for name in names], dtype=object)
        self._decode = _decoder((height, width))
        for name in SERVED_SIGNATURES:
            spec = signature_from_def(name, defs[name])
            self.signatures[name] = spec
            self.signature_defs[name] = defs[name]
            self._runners[name] = self._runner(spec.name, spec.batched)

    def _answer(self, images: np.ndarray) -> Arrays:
        assert self.pool is not None
        with self.pool.lend() as model:
            probabilities = model.predict(images)
        ids = probabilities.argmax(axis=1).astype(np.int64)
        return {PROBABILITIES: probabilities, CLASS_IDS: ids, CLASS_NAMES: self._class_names[ids]}

    def _runner(self, signature: str, batched: bool) -> Any:
        on_runtime = self._on_runtime
        decode = self._decode

        def call(inputs: Arrays) -> Arrays:
            started = time.perf_counter()
            try:
                if signature == SERVING_BYTES:
                    images = decode(inputs[BYTES_INPUT])
                else:
                    images = inputs[IMAGES_INPUT]
                outputs = self._answer(images)
            except Exception as err:
                raise serving_error_from(err) from None
            if on_runtime is not None:
                on_runtime(time.perf_counter() - started)
            return outputs

        if self.batching is not None and batched:
            on_batch = None
            if self._on_batch is not None:
                on_batch = lambda n, padded, secs, _s=signature: self._on_batch(_s, n, padded, secs)  # noqa: E731
            return BatchedRunner(call, self.batching, name=f"{self.name}-v{self.version}-{signature}-tflite",
                                 on_batch=on_batch)
        return DirectRunner(call, self._direct_pool)

    def replays(self, signature_name: str) -> bool:
        """Warm-up records of signatures the int8 model does not serve are skipped."""
        return (signature_name or DEFAULT_SIGNATURE) in SERVED_SIGNATURES

    def unload(self) -> None:
        super().unload()
        self.pool = None


def _decoder(image_size: tuple[int, int]) -> Any:
    """A traced `decode_image_batch` at this size: numpy object array of bytes -> uint8 images."""
    import tensorflow as tf

    from ingot.export.saved_model import decode_image_batch

    function = tf.function(lambda image_bytes: decode_image_batch(image_bytes, image_size),
                           input_signature=[tf.TensorSpec([None], tf.string)])

    def decode(values: np.ndarray) -> np.ndarray:
        return function(tf.constant(values, dtype=tf.string)).numpy()

    return decode

