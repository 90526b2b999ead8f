"""gRPC conformance with the official tensorflow-serving-api stubs as the client, written from
TF Serving's protos: PredictionService (Predict, GetModelMetadata, the unsupported Classify and
Regress) and ModelService (GetModelStatus, HandleReloadConfigRequest)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests.serving.support import (
    MODEL,
    colour_images,
    grpc_stubs,
    http,
    png,
    predict_request,
    publish,
    start_server,
)

pytestmark = pytest.mark.xdist_group("serving-conformance")  # one worker: shared server, ordered tests

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def stubs(conformance_server):
    channel, prediction, models = grpc_stubs(conformance_server.grpc_target)
    yield prediction, models
    channel.close()


def outputs_of(response):
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def test_predict_default_signature(stubs):
    prediction, _ = stubs
    response = prediction.Predict(predict_request(images=colour_images([0, 1, 2], seed=3)), timeout=30)
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    out = outputs_of(response)
    assert set(out) == {"probabilities", "class_ids", "class_names"}
    assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (3, 3)
    assert out["class_ids"].dtype == np.int64 and out["class_names"].shape == (3,)
    assert response.outputs["class_names"].dtype == tf.string.as_datatype_enum


@pytest.mark.parametrize("pin", [{"version": 1}, {"label": "stable"}])
def test_predict_by_version_and_label(stubs, pin):
    prediction, _ = stubs
    response = prediction.Predict(predict_request(images=colour_images([2, 0, 1], seed=4), **pin), timeout=30)
    assert response.model_spec.version.value == 1
    assert [c.decode() for c in outputs_of(response)["class_names"]] == ["blue", "red", "green"]


def test_predict_accepts_typed_value_fields_not_only_tensor_content(stubs):
    from tensorflow.core.framework import tensor_pb2

    prediction, _ = stubs
    images = colour_images([1], seed=5)
    request = predict_request(version=1)
    proto = tensor_pb2.TensorProto(dtype=tf.uint8.as_datatype_enum)
    for d in images.shape:
        proto.tensor_shape.dim.add().size = d
    proto.int_val.extend(images.ravel().tolist())
    request.inputs["images"].CopyFrom(proto)
    assert outputs_of(prediction.Predict(request, timeout=30))["class_names"][0] == b"green"


def test_predict_serving_bytes_matches_uint8(stubs):
    prediction, _ = stubs
    images = colour_images([0, 2], seed=6)
    request = predict_request(version=1, signature="serving_bytes")
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([png(i) for i in images]))
    from_bytes = outputs_of(prediction.Predict(request, timeout=30))
    from_arrays = outputs_of(prediction.Predict(predict_request(images=images, version=1), timeout=30))
    np.testing.assert_allclose(from_bytes["probabilities"], from_arrays["probabilities"], atol=1e-6)
    assert from_bytes["class_names"].tolist() == [b"red", b"blue"]


def test_output_filter(stubs):
    prediction, _ = stubs
    request = predict_request(images=colour_images([0]))
    request.output_filter.append("class_names")
    response = prediction.Predict(request, timeout=30)
    assert list(response.outputs) == ["class_names"]


def _error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


@pytest.mark.parametrize(
    "mutate, code, fragment",
    [
        (lambda r: r.ClearField("model_spec"), grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
        (lambda r: setattr(r.model_spec, "name", "unknown"), grpc.StatusCode.NOT_FOUND,
         "Servable not found for request: Latest(unknown)"),
        (lambda r: r.model_spec.version.__setattr__("value", 9), grpc.StatusCode.NOT_FOUND,
         f"Servable not found for request: Specific({MODEL}, 9)"),
        (lambda r: setattr(r.model_spec, "version_label", "nope"), grpc.StatusCode.INVALID_ARGUMENT,
         "Unrecognized servable version label: nope"),
        (lambda r: setattr(r.model_spec, "signature_name", "nope"), grpc.StatusCode.FAILED_PRECONDITION,
         'Serving signature key "nope" not found.'),
        (lambda r: r.inputs["extra"].CopyFrom(tf.make_tensor_proto([1])), grpc.StatusCode.INVALID_ARGUMENT,
         "input size does not match signature: 2!=1 len({extra,images}) != len({images}). Sent extra: {extra}."),
        (lambda r: r.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 16, 16, 3), np.float32))),
         grpc.StatusCode.INVALID_ARGUMENT, "input 'images' has dtype float; the signature expects uint8"),
        (lambda r: r.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 16, 3), np.uint8))),
         grpc.StatusCode.INVALID_ARGUMENT, "input 'images' has rank 3"),
        (lambda r: r.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((9, 16, 16, 3), np.uint8))),
         grpc.StatusCode.INVALID_ARGUMENT, "Task size 9 is larger than maximum input batch size 8"),
        (lambda r: r.output_filter.append("logits"), grpc.StatusCode.INVALID_ARGUMENT,
         "output tensor alias not found in signature: logits"),
        (lambda r: r.output_filter.extend(["class_ids", "class_ids"]), grpc.StatusCode.INVALID_ARGUMENT,
         "duplicate output tensor alias: class_ids"),
    ],
)
def test_predict_errors(stubs, mutate, code, fragment):
    prediction, _ = stubs
    request = predict_request(images=colour_images([0]))
    mutate(request)
    got_code, details = _error(prediction.Predict, request)
    assert got_code == code and fragment in details


def test_undecodable_bytes_are_invalid_argument(stubs):
    prediction, _ = stubs
    request = predict_request(signature="serving_bytes")
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([b"definitely not an image"]))
    code, details = _error(prediction.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "JPEG, PNG, GIF or BMP" in details


def test_get_model_metadata_returns_signature_def_map(stubs):
    from tensorflow_serving.apis import get_model_metadata_pb2

    prediction, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = 1
    request.metadata_field.append("signature_def")
    response = prediction.GetModelMetadata(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, 1)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    default = signatures.signature_def["serving_default"]
    assert default.inputs["images"].dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in default.inputs["images"].tensor_shape.dim] == [-1, 16, 16, 3]
    assert signatures.signature_def["serving_bytes"].inputs["image_bytes"].dtype == tf.string.as_datatype_enum


@pytest.mark.parametrize(
    "fields, name, code, fragment",
    [
        ([], MODEL, grpc.StatusCode.INVALID_ARGUMENT, "must specify at least one metadata_field"),
        (["signature_def", "graph"], MODEL, grpc.StatusCode.INVALID_ARGUMENT, "Metadata field graph is not supported"),
        (["signature_def"], "unknown", grpc.StatusCode.NOT_FOUND, "Servable not found"),
    ],
)
def test_get_model_metadata_errors(stubs, fields, name, code, fragment):
    from tensorflow_serving.apis import get_model_metadata_pb2

    prediction, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = name
    request.metadata_field.extend(fields)
    got, details = _error(prediction.GetModelMetadata, request)
    assert got == code and fragment in details


def test_get_model_status(stubs):
    from tensorflow_serving.apis import get_model_status_pb2

    _, models = stubs
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = models.GetModelStatus(request, timeout=30)
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == [
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0),
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0),
    ]
    request.model_spec.version.value = 1
    assert [s.version for s in models.GetModelStatus(request, timeout=30).model_version_status] == [1]
    request.model_spec.version.value = 5
    assert _error(models.GetModelStatus, request) == (
        grpc.StatusCode.NOT_FOUND, f"Could not find version 5 of model {MODEL}")
    assert _error(models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def test_classify_and_regress_are_unimplemented(stubs):
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    prediction, _ = stubs
    for call, request in ((prediction.Classify, classification_pb2.ClassificationRequest()),
                          (prediction.Regress, regression_pb2.RegressionRequest())):
        request.model_spec.name = MODEL
        code, details = _error(call, request)
        assert code == grpc.StatusCode.UNIMPLEMENTED and "use Predict" in details


def test_grpc_requests_are_counted_with_the_grpc_entrypoint(conformance_server, stubs):
    prediction, _ = stubs
    prediction.Predict(predict_request(images=colour_images([0]), version=1), timeout=30)
    _, text, _ = http("GET", conformance_server.rest_url + "/monitoring/prometheus/metrics")
    assert 'API="Predict",entrypoint="GRPC",model_version="1"' in text


def test_handle_reload_config_adds_relabels_and_removes_models(exports, tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2

    from ingot.serving.config import single_model_config

    base = tmp_path / "repo"
    publish(exports["v1"], base, "first")
    publish(exports["v1"], base, "second")
    publish(exports["v2"], base, "second")
    # Reloads are off by default (issue 16): this server allows them, with the test's folder as root.
    server = start_server(single_model_config("first", base / "first"),
                          server_kw={"allow_model_config_reload": True, "model_roots": (str(tmp_path.resolve()),)})
    channel, prediction, models = grpc_stubs(server.grpc_target)
    try:
        request = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(f"""
            model_config_list {{
              config {{ name: "second" base_path: "{base / 'second'}" model_platform: "tensorflow"
                        model_version_policy {{ all {{}} }} version_labels {{ key: "stable" value: 1 }} }}
            }}""", request.config)
        response = models.HandleReloadConfigRequest(request, timeout=120)
        assert response.status.error_code == 0
        assert server.manager.model_names() == ["second"]
        labelled = prediction.Predict(predict_request("second", colour_images([0]), label="stable"), timeout=30)
        assert labelled.model_spec.version.value == 1
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "first"
        assert _error(models.GetModelStatus, status)[0] == grpc.StatusCode.NOT_FOUND  # removed and unloaded

        bad = model_management_pb2.ReloadConfigRequest()
        bad.config.custom_model_config.type_url = "x"
        code, details = _error(models.HandleReloadConfigRequest, bad)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "Only ModelConfigList is currently supported" in details

        empty = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(f'model_config_list {{ config {{ name: "ghost" base_path: "{tmp_path / "ghost"}" }} }}', empty.config)
        code, details = _error(models.HandleReloadConfigRequest, empty)
        assert code == grpc.StatusCode.NOT_FOUND and "ghost" in details
    finally:
        channel.close()
        server.stop()


def _reload_request(base_path):
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2

    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(f'model_config_list {{ config {{ name: "evil" base_path: "{base_path}" '
                      'model_platform: "tensorflow" } }', request.config)
    return request


def test_reload_config_is_refused_by_default_naming_the_flag(exports, tmp_path):
    from ingot.serving.config import single_model_config

    base = tmp_path / "repo"
    publish(exports["v1"], base, "first")
    publish(exports["v1"], tmp_path / "elsewhere", "evil")
    server = start_server(single_model_config("first", base / "first"))
    channel, prediction, models = grpc_stubs(server.grpc_target)
    try:
        code, details = _error(models.HandleReloadConfigRequest, _reload_request(tmp_path / "elsewhere" / "evil"))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "--allow_model_config_reload" in details
        assert server.manager.model_names() == ["first"]  # nothing loaded, nothing unloaded
    finally:
        channel.close()
        server.stop()


def test_reload_config_only_takes_base_paths_under_the_model_roots(exports, tmp_path):
    from ingot.serving.config import single_model_config

    base = tmp_path / "repo"
    publish(exports["v1"], base, "first")
    publish(exports["v1"], tmp_path / "elsewhere", "evil")
    server = start_server(single_model_config("first", base / "first"),
                          server_kw={"allow_model_config_reload": True, "model_roots": (str(base.resolve()),)})
    channel, prediction, models = grpc_stubs(server.grpc_target)
    try:
        for path in (tmp_path / "elsewhere" / "evil", base / ".." / "elsewhere" / "evil", "/etc"):
            code, details = _error(models.HandleReloadConfigRequest, _reload_request(path))
            assert code == grpc.StatusCode.PERMISSION_DENIED and "model roots" in details, (path, details)
        assert server.manager.model_names() == ["first"]
    finally:
        channel.close()
        server.stop()


@pytest.mark.parametrize("peer, loopback", [
    ("ipv4:127.0.0.1:5000", True), ("ipv6:[::1]:5000", True), ("ipv6:[::ffff:127.0.0.1]:1", True),
    ("unix:/tmp/s", True), ("ipv4:10.0.0.7:5000", False), ("ipv6:[fe80::1]:5000", False), ("", False),
    (None, False), ("garbage", False),
])
def test_loopback_peers(peer, loopback):
    from ingot.serving.local import is_loopback_peer

    assert is_loopback_peer(peer) is loopback


def test_reload_from_a_remote_peer_is_refused():
    import asyncio
    from unittest import mock

    from ingot.protocol.status import ServingError
    from ingot.serving.local import LocalBackend

    backend = LocalBackend(mock.Mock(), allow_reload=True, model_roots=("/models",))
    with pytest.raises(ServingError) as caught:
        asyncio.run(backend.reload_config(_reload_request("/models/x").config, peer="ipv4:10.1.2.3:4000"))
    assert caught.value.code.name == "PERMISSION_DENIED" and "loopback" in caught.value.message
