"""Helpers shared by the serving and client tests: tiny real models exported and published with
ingot.export (the real artifacts), servers on free loopback ports, small HTTP/gRPC calls."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ["red", "green", "blue"]
SIZE = (16, 16)
MODEL = "colours"


def colour_images(labels, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(20, 70, size=(len(labels), *SIZE, 3))
    for i, label in enumerate(labels):
        images[i, :, :, label] += 150
    return images.astype(np.uint8)


def tiny_model(seed: int, epochs: int):
    """Keras Input 'images' float32 0..255 → Rescaling → conv → softmax; a few epochs on colours."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(*SIZE, 3), dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    if epochs:
        labels = np.tile(np.arange(len(CLASSES)), 30)
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
        model.fit(colour_images(labels, seed).astype("float32"), labels, epochs=epochs, batch_size=30, verbose=0)
    return model


def model_card(name: str = MODEL) -> dict:
    return {
        "name": name,
        "architecture": "tiny",
        "training_config": {"epochs": 1},
        "data_hash": "sha256:" + "cd" * 32,
        "metrics": {"accuracy": 1.0, "per_class": {c: {"f1": 1.0} for c in CLASSES}},
        "drift_baseline": {},
    }


def export(model, directory: Path, *, warmup_batch_sizes=(1, 2, 4)) -> Path:
    from ingot.export.saved_model import export_saved_model

    return export_saved_model(model, directory, class_names=CLASSES, image_size=SIZE,
                              model_card=model_card(), warmup_batch_sizes=warmup_batch_sizes)


def publish(export_dir: Path, base: Path, name: str = MODEL) -> int:
    from ingot.export.publishing import publish as publish_version

    return publish_version(export_dir, base, name).version


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_config, *, batching=None, rest_timeout_s: float | None = 30.0, poll_s: float = 0.2,
                 warmup: bool = True, max_body_bytes: int = 1 << 20, wait_ready: bool = True,
                 config_file: Path | None = None, config_poll_s: float = 0.0,
                 server_kw: dict[str, Any] | None = None, **manager_kw: Any):
    from ingot.serving.frontend import RequestLimits
    from ingot.serving.manager import ManagerOptions
    from ingot.serving.server import ServerOptions, ServerThread

    options = ServerOptions(
        model_config=model_config, host="127.0.0.1", grpc_port=0, rest_port=0,
        manager=ManagerOptions(batching=batching, enable_model_warmup=warmup,
                               file_system_poll_wait_seconds=poll_s, **manager_kw),
        limits=RequestLimits(max_body_bytes=max_body_bytes, max_json_depth=16, max_elements=1 << 16,
                             default_timeout_s=rest_timeout_s or 30.0),
        rest_timeout_s=rest_timeout_s, shutdown_grace_s=5.0,
        model_config_file=str(config_file) if config_file else None,
        model_config_file_poll_wait_seconds=config_poll_s,
        **(server_kw or {}),
    )
    server = ServerThread(options).start()
    if wait_ready:
        server.wait_until_ready(60)
    return server


def http(method: str, url: str, body: Any = None, *, raw: bytes | None = None, timeout: float = 30.0):
    """(status, parsed JSON or text, headers) without raising on 4xx/5xx."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        status, payload, headers = err.code, err.read(), dict(err.headers)
    try:
        return status, json.loads(payload), headers
    except ValueError:
        return status, payload.decode("utf-8", errors="replace"), headers


def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def grpc_stubs(target: str):
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(target)
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)


def predict_request(name: str = MODEL, images: np.ndarray | None = None, *, signature: str = "",
                    version: int | None = None, label: str | None = None):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if signature:
        request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    if images is not None:
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    return request


def png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
