"""The client side of the wire, shared by the client, the gateway's upstreams and the loop's
traffic: which model a request names (REST path, gRPC ModelSpec) and predict answers decoded."""

from __future__ import annotations

import numpy as np

from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.rest.client import predict_outputs
from ingot.protocol.routes import parse_v1_path


def test_paths_name_the_model_version_or_label_and_quote_what_callers_choose():
    assert ModelSpec("digits").path(":predict") == "/v1/models/digits:predict"
    assert ModelSpec("digits", 3).path("/metadata") == "/v1/models/digits/versions/3/metadata"
    assert ModelSpec("digits", label="stable").path() == "/v1/models/digits/labels/stable"
    assert ModelSpec("a/b", label="x:predict").path(":predict") == "/v1/models/a%2Fb/labels/x%3Apredict:predict"
    route = parse_v1_path("POST", ModelSpec("digits", label="canary").path(":predict"))
    assert (route.kind, route.model_name, route.version, route.label) == ("predict", "digits", None, "canary")


def test_grpc_model_specs_carry_a_version_or_a_label():
    from tensorflow_serving.apis import model_pb2

    by_version = ModelSpec("digits", 2).fill(model_pb2.ModelSpec(), "serving_bytes")
    assert by_version.name == "digits" and by_version.version.value == 2 and by_version.signature_name == "serving_bytes"
    by_label = ModelSpec("digits", label="stable").fill(model_pb2.ModelSpec())
    assert by_label.WhichOneof("version_choice") == "version_label" and by_label.version_label == "stable"
    latest = ModelSpec("digits").fill(model_pb2.ModelSpec())
    assert latest.WhichOneof("version_choice") is None


def test_predict_answers_decode_in_row_and_columnar_form():
    def unnamed() -> str:
        return "probabilities"

    columnar = predict_outputs({"outputs": {"class_ids": [1, 0], "class_names": ["a", "b"]}}, unnamed)
    assert columnar is not None and columnar["class_ids"].tolist() == [1, 0]
    assert columnar["class_names"].tolist() == ["a", "b"]
    single = predict_outputs({"outputs": [[0.1, 0.9]]}, unnamed)
    assert single is not None and np.allclose(single["probabilities"], [[0.1, 0.9]])
    rows = predict_outputs({"predictions": [{"class_ids": 1, "extra_bytes": {"b64": "AAE="}}]}, unnamed,
                           names=("class_ids",))
    assert rows is not None and list(rows) == ["class_ids"] and rows["class_ids"].tolist() == [1]
    assert predict_outputs({"predictions": [[0.5, 0.5]]}, unnamed)["probabilities"].shape == (1, 2)  # type: ignore[index]
    assert predict_outputs({"error": "no"}, unnamed) is None
    assert predict_outputs({"predictions": []}, unnamed) is None
    assert predict_outputs([1, 2], unnamed) is None
