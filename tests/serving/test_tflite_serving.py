"""`ingot serve --prefer_tflite_model`: the int8 model.tflite through LiteRT behind the same REST and
gRPC API (TF Serving's client protos), with `serving_bytes` decoding real JPEG and PNG bytes the way
the SavedModel's graph does, and the SavedModel fallback for a version without model.tflite."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.serving.support import (
    CLASSES,
    MODEL,
    SIZE,
    colour_images,
    export,
    grpc_stubs,
    http,
    model_card,
    png,
    predict_request,
    publish,
    start_server,
    tiny_model,
    wait_for,
)

tf = pytest.importorskip("tensorflow")


def jpeg_photo() -> bytes:
    """A real photograph as shipped by scikit-learn (JPEG, 427x640): resized in the server."""
    import sklearn

    return (Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg").read_bytes()


def jpeg(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def export_with_int8(model, directory: Path) -> Path:
    from ingot.export.saved_model import export_saved_model
    from ingot.export.tflite import Int8Plan

    labels = np.tile(np.arange(len(CLASSES)), 40)
    images = colour_images(labels, seed=11)
    probabilities = np.asarray(model.predict(images.astype(np.float32), verbose=0))
    plan = Int8Plan(calibration_images=colour_images(np.tile(np.arange(3), 100), seed=12), test_images=images,
                    test_labels=labels, float_probabilities=probabilities)
    return export_saved_model(model, directory, class_names=CLASSES, image_size=SIZE, model_card=model_card(),
                              warmup_batch_sizes=(1, 2, 4), int8=plan)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Version 1 has model.tflite; version 2 (same model, no int8 plan) has none. Batching on."""
    from ingot.serving.config import BatchingOptions, parse_model_server_config

    root = tmp_path_factory.mktemp("tflite")
    model = tiny_model(seed=0, epochs=3)
    with_int8 = export_with_int8(model, root / "with")
    assert (with_int8 / "model.tflite").is_file()
    base = root / "repo"
    assert publish(with_int8, base) == 1
    assert publish(export(model, root / "without"), base) == 2
    config = parse_model_server_config(f"""
        model_config_list {{ config {{
            name: "{MODEL}" base_path: "{base / MODEL}" model_platform: "tensorflow"
            model_version_policy {{ all {{}} }}
        }} }}""")
    batching = BatchingOptions(max_batch_size=8, allowed_batch_sizes=(1, 2, 4, 8), num_batch_threads=1)
    server = start_server(config, batching=batching, prefer_tflite_model=True, tflite_interpreters=2)
    wait_for(lambda: server.manager.readiness()["models"][MODEL] == [2, 1], what="both versions AVAILABLE")
    signature = tf.saved_model.load(str(base / MODEL / "1")).signatures
    yield server, base / MODEL / "1", signature
    server.stop()


def rest_predict(server, body, version=1):
    return http("POST", f"{server.rest_url}/v1/models/{MODEL}/versions/{version}:predict", body)


def test_the_version_with_model_tflite_is_served_by_litert(setup):
    from ingot.serving.servable import Servable
    from ingot.serving.tflite import TfliteServable

    server, _, _ = setup
    assert isinstance(server.manager.resolve(MODEL, 1), TfliteServable)
    fallback = server.manager.resolve(MODEL, 2)
    assert type(fallback) is Servable and "serving_embedding" in fallback.signatures
    int8 = server.manager.resolve(MODEL, 1)
    assert len(int8.pool.models) == 2
    assert int8.warmup.requests_replayed > 0 and set(int8.warmup.batch_sizes_run) == {"serving_default",
                                                                                     "serving_bytes"}


def test_rest_images_same_keys_and_answers_as_the_float_signature(setup):
    server, _, signature = setup
    images = colour_images([0, 1, 2, 2, 1], seed=3)
    status, body, _ = rest_predict(server, {"instances": images.tolist()})
    assert status == 200, body
    rows = body["predictions"]
    assert [sorted(row) for row in rows] == [["class_ids", "class_names", "probabilities"]] * 5
    expected = signature["serving_default"](images=tf.constant(images))
    assert [row["class_ids"] for row in rows] == expected["class_ids"].numpy().tolist() == [0, 1, 2, 2, 1]
    assert [row["class_names"] for row in rows] == ["red", "green", "blue", "blue", "green"]
    np.testing.assert_allclose([row["probabilities"] for row in rows], expected["probabilities"].numpy(), atol=0.05)


@pytest.mark.parametrize("encode", ["photo_jpeg", "jpeg", "png"])
def test_serving_bytes_decodes_as_the_graph_does(setup, encode):
    """Bytes in give exactly the answer of the graph-decoded pixels sent as `images`, and the float
    model's serving_bytes agrees on the class."""
    from ingot.data.preprocess import decode_and_resize

    server, _, signature = setup
    images = colour_images([2, 0, 1], seed=5)
    payloads = [jpeg_photo()] if encode == "photo_jpeg" else [(jpeg if encode == "jpeg" else png)(i) for i in images]
    body = {"signature_name": "serving_bytes",
            "instances": [{"b64": base64.b64encode(p).decode()} for p in payloads]}
    status, answer, _ = rest_predict(server, body)
    assert status == 200, answer
    pixels = np.stack([decode_and_resize(tf.constant(p), SIZE).numpy() for p in payloads])
    if encode == "png":
        np.testing.assert_array_equal(pixels, images)  # PNG at the model's size passes through untouched
    status, direct, _ = rest_predict(server, {"instances": pixels.tolist()})
    assert status == 200
    assert answer["predictions"] == direct["predictions"]
    floats = signature["serving_bytes"](image_bytes=tf.constant(payloads))
    assert [row["class_ids"] for row in answer["predictions"]] == floats["class_ids"].numpy().tolist()


def test_rest_bad_bytes_are_invalid_argument(setup):
    server, _, _ = setup
    body = {"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(b"not an image").decode()}]}
    status, answer, _ = rest_predict(server, body)
    assert status == 400 and "image_bytes must hold JPEG, PNG, GIF or BMP" in answer["error"]


def test_rest_embedding_is_not_served_from_the_int8_model(setup):
    server, _, _ = setup
    status, answer, _ = rest_predict(server, {"signature_name": "serving_embedding",
                                              "instances": colour_images([0], seed=1).tolist()})
    assert status == 400 and "serving_embedding" in answer["error"]
    status, answer, _ = rest_predict(server, {"signature_name": "serving_embedding",
                                              "instances": colour_images([0], seed=1).tolist()}, version=2)
    assert status == 200 and len(answer["predictions"][0]) == 4  # the float version has it (one output: bare rows)


@pytest.fixture(scope="module")
def stubs(setup):
    channel, prediction, models = grpc_stubs(setup[0].grpc_target)
    yield prediction
    channel.close()


def test_grpc_predict_images_and_bytes_with_tf_serving_protos(setup, stubs):
    _, _, signature = setup
    images = colour_images([1, 2, 0, 0], seed=8)
    response = stubs.Predict(predict_request(images=images, version=1), timeout=30)
    assert response.model_spec.version.value == 1 and response.model_spec.signature_name == "serving_default"
    out = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    assert set(out) == {"probabilities", "class_ids", "class_names"}
    assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (4, 3)
    assert out["class_ids"].dtype == np.int64 and out["class_ids"].tolist() == [1, 2, 0, 0]
    assert response.outputs["class_names"].dtype == tf.string.as_datatype_enum
    assert [c.decode() for c in out["class_names"]] == ["green", "blue", "red", "red"]

    request = predict_request(version=1, signature="serving_bytes")
    payloads = [png(i) for i in images] + [jpeg_photo()]
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(payloads, dtype=tf.string))
    by_bytes = {k: tf.make_ndarray(v) for k, v in stubs.Predict(request, timeout=30).outputs.items()}
    np.testing.assert_array_equal(by_bytes["probabilities"][:4], out["probabilities"])
    floats = signature["serving_bytes"](image_bytes=tf.constant(payloads))
    assert by_bytes["class_ids"].tolist() == floats["class_ids"].numpy().tolist()


def test_grpc_errors_and_metadata(setup, stubs):
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = predict_request(version=1, signature="serving_bytes")
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([b"GIF7 nope"], dtype=tf.string))
    with pytest.raises(grpc.RpcError) as caught:
        stubs.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as caught:
        stubs.Predict(predict_request(images=np.zeros((1, 8, 8, 3), np.uint8), version=1), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = MODEL
    metadata.model_spec.version.value = 1
    metadata.metadata_field.append("signature_def")
    response = stubs.GetModelMetadata(metadata, timeout=30)
    defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(defs)
    assert sorted(defs.signature_def) == ["serving_bytes", "serving_default"]
    assert sorted(defs.signature_def["serving_default"].outputs) == ["class_ids", "class_names", "probabilities"]


def test_cli_flags_reach_the_manager(tmp_path):
    from ingot.cli.main import build_parser
    from ingot.cli.serve import server_options
    from ingot.errors import ConfigError

    (tmp_path / "m" / "1").mkdir(parents=True)
    parser = build_parser()
    args = parser.parse_args(["serve", "--model_base_path", str(tmp_path / "m"), "--prefer_tflite_model",
                              "--num_tflite_pools", "2", "--num_tflite_interpreters_per_pool", "3"])
    manager = server_options(args).manager
    assert manager.prefer_tflite_model is True and manager.tflite_interpreters == 6
    default = server_options(parser.parse_args(["serve", "--model_base_path", str(tmp_path / "m")])).manager
    assert default.prefer_tflite_model is False and default.tflite_interpreters == (os.cpu_count() or 1)
    args = parser.parse_args(["serve", "--model_base_path", str(tmp_path / "m"), "--num_tflite_pools", "0"])
    with pytest.raises(ConfigError, match="--num_tflite_pools=0"):
        server_options(args)
