"""REST conformance, written from TF Serving's REST API documentation: every route, its answer
shape and its errors ({"error": ...} with TF Serving's HTTP status)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.serving.support import CLASSES, MODEL, colour_images, http, png

pytestmark = pytest.mark.xdist_group("serving-conformance")  # one worker: shared server, ordered tests


@pytest.fixture(scope="module")
def server(conformance_server):
    return conformance_server


@pytest.fixture(scope="module")
def url(server):
    return server.rest_url


def test_model_status_lists_every_version_newest_first(url):
    status, body, headers = http("GET", f"{url}/v1/models/{MODEL}")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert body == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    ]}


@pytest.mark.parametrize("path, version", [("/versions/1", "1"), ("/labels/canary", "2"), ("/labels/stable", "1")])
def test_model_status_of_one_version_or_label(url, path, version):
    status, body, _ = http("GET", f"{url}/v1/models/{MODEL}{path}")
    assert status == 200
    assert [v["version"] for v in body["model_version_status"]] == [version]


@pytest.mark.parametrize(
    "path, code, message",
    [
        (f"/v1/models/{MODEL}/versions/9", 404, f"Could not find version 9 of model {MODEL}"),
        ("/v1/models/unknown", 404, "Could not find any versions of model unknown"),
        ("/v1/models", 400, "Missing model name in request."),
        (f"/v1/models/{MODEL}/labels/nope", 400, "Unrecognized servable version label: nope"),
        (f"/v1/models/{MODEL}/versions/1/bogus", 400, f"Malformed request: GET /v1/models/{MODEL}/versions/1/bogus"),
    ],
)
def test_status_errors(url, path, code, message):
    status, body, _ = http("GET", url + path)
    assert (status, body) == (code, {"error": message})


def test_metadata_returns_the_signature_defs(url):
    status, body, _ = http("GET", f"{url}/v1/models/{MODEL}/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "2"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"serving_default", "serving_bytes", "serving_embedding"}
    images = signatures["serving_default"]["inputs"]["images"]
    assert images["dtype"] == "DT_UINT8"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "16", "16", "3"]
    assert signatures["serving_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert set(signatures["serving_default"]["outputs"]) == {"probabilities", "class_ids", "class_names"}
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"
    _, pinned, _ = http("GET", f"{url}/v1/models/{MODEL}/versions/1/metadata")
    assert pinned["model_spec"]["version"] == "1"
    _, labelled, _ = http("GET", f"{url}/v1/models/{MODEL}/labels/stable/metadata")
    assert labelled["model_spec"]["version"] == "1"


def test_predict_row_format_returns_predictions_per_instance(url):
    images = colour_images([0, 1, 2], seed=11)
    status, body, headers = http("POST", f"{url}/v1/models/{MODEL}/versions/1:predict",
                                 {"instances": images.tolist()})
    assert status == 200 and headers["X-Model-Version"] == "1"
    predictions = body["predictions"]
    assert [p["class_names"] for p in predictions] == CLASSES  # the trained version knows colours
    assert [p["class_ids"] for p in predictions] == [0, 1, 2]
    for p in predictions:
        assert set(p) == {"probabilities", "class_ids", "class_names"}
        assert len(p["probabilities"]) == 3 and abs(sum(p["probabilities"]) - 1) < 1e-5


def test_predict_columnar_format_returns_named_outputs(url):
    images = colour_images([2, 0], seed=12)
    status, body, _ = http("POST", f"{url}/v1/models/{MODEL}/labels/stable:predict",
                           {"signature_name": "serving_default", "inputs": {"images": images.tolist()}})
    assert status == 200
    outputs = body["outputs"]
    assert outputs["class_names"] == ["blue", "red"] and outputs["class_ids"] == [2, 0]
    assert np.asarray(outputs["probabilities"]).shape == (2, 3)


def test_predict_b64_bytes_matches_the_uint8_answer(url):
    images = colour_images([1, 2], seed=13)
    _, as_arrays, _ = http("POST", f"{url}/v1/models/{MODEL}/versions/1:predict", {"instances": images.tolist()})
    encoded = [{"b64": base64.b64encode(png(img)).decode()} for img in images]
    status, as_bytes, _ = http("POST", f"{url}/v1/models/{MODEL}/versions/1:predict",
                               {"signature_name": "serving_bytes", "instances": encoded})
    assert status == 200
    assert [p["class_names"] for p in as_bytes["predictions"]] == [p["class_names"] for p in as_arrays["predictions"]]
    np.testing.assert_allclose(
        [p["probabilities"] for p in as_bytes["predictions"]],
        [p["probabilities"] for p in as_arrays["predictions"]], atol=1e-6,
    )


def test_latest_version_answers_by_default(url):
    _, _, headers = http("POST", f"{url}/v1/models/{MODEL}:predict", {"instances": colour_images([0]).tolist()})
    assert headers["X-Model-Version"] == "2"


@pytest.mark.parametrize(
    "path, document, code, fragment",
    [
        (f"/v1/models/{MODEL}:predict", {"signature_name": "nope", "instances": [1]}, 400,
         'Serving signature name: "nope" not found in signature def'),
        ("/v1/models/unknown:predict", {"instances": [1]}, 404, "Servable not found for request: Latest(unknown)"),
        (f"/v1/models/{MODEL}/versions/9:predict", {"instances": [1]}, 404,
         f"Servable not found for request: Specific({MODEL}, 9)"),
        (f"/v1/models/{MODEL}/labels/nope:predict", {"instances": [1]}, 400, "Unrecognized servable version label: nope"),
        (f"/v1/models/{MODEL}:explode", {"instances": [1]}, 400, f"Malformed request: POST /v1/models/{MODEL}:explode"),
        (f"/v1/models/{MODEL}:classify", {"examples": [{}]}, 501, "classify is not supported"),
        (f"/v1/models/{MODEL}:regress", {"examples": [{}]}, 501, "regress is not supported"),
        (f"/v1/models/{MODEL}:predict", {"instances": [[[1, 2, 3]]]}, 400, "input 'images' has rank 3"),
        (f"/v1/models/{MODEL}:predict", {"instances": np.zeros((1, 8, 8, 3), int).tolist()}, 400,
         "has shape [1,8,8,3]; the signature expects [-1,16,16,3] (uint8)"),
        (f"/v1/models/{MODEL}:predict", {"instances": np.full((1, 16, 16, 3), 0.5).tolist()}, 400,
         "is not of expected type: uint8"),
        (f"/v1/models/{MODEL}:predict", {"signature_name": "serving_bytes", "instances": [{"b64": "%%%"}]}, 400,
         "Unable to base64 decode"),
        (f"/v1/models/{MODEL}:predict", {"signature_name": "serving_bytes",
                                         "instances": [{"b64": base64.b64encode(b"not an image").decode()}]},
         400, "JPEG, PNG, GIF or BMP"),
        (f"/v1/models/{MODEL}:predict", {"instances": np.zeros((9, 16, 16, 3), int).tolist()}, 400,
         "Task size 9 is larger than maximum input batch size 8"),
    ],
)
def test_predict_errors(url, path, document, code, fragment):
    status, body, headers = http("POST", url + path, document)
    assert status == code, body
    assert set(body) == {"error"} and fragment in body["error"]
    assert headers["Content-Type"].startswith("application/json")


def test_transport_level_errors_are_json_too(url):
    status, body, _ = http("POST", f"{url}/v1/models/{MODEL}:predict", raw=b"{bad json")
    assert status == 400 and body["error"].startswith("JSON Parse error")
    status, body, _ = http("POST", f"{url}/v1/models/{MODEL}:predict", raw=b"")
    assert (status, body) == (400, {"error": "JSON Parse error: The document is empty"})
    status, body, _ = http("POST", f"{url}/v1/models/{MODEL}:predict", raw=b" " * (300 << 10))
    assert status == 413 and "exceeds the limit of 262144 bytes" in body["error"]
    deep = b'{"instances": ' + b"[" * 40 + b"]" * 40 + b"}"
    status, body, _ = http("POST", f"{url}/v1/models/{MODEL}:predict", raw=deep)
    assert status == 400 and "nesting depth 41 exceeds the limit of 16" in body["error"]
    status, body, _ = http("PUT", f"{url}/v1/models/{MODEL}", raw=b"{}")
    assert status == 400 and body["error"] == f"Malformed request: PUT /v1/models/{MODEL}"
    status, body, _ = http("GET", f"{url}/nowhere")
    assert status == 404 and "error" in body


def test_one_undecodable_image_fails_only_its_own_request_under_batching(server, url):
    """A bad image merged into a batch with good ones must not fail the good requests."""
    from concurrent.futures import ThreadPoolExecutor

    good = {"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(png(colour_images([0])[0])).decode()}]}
    bad = {"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(b"GIF89a-truncated").decode()}]}
    documents = [good, bad] * 6
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda d: http("POST", f"{url}/v1/models/{MODEL}/versions/1:predict", d), documents))
    assert [r[0] for r in results] == [200, 400] * 6
    assert all(r[1]["predictions"][0]["class_names"] == "red" for r in results[::2])


def test_health_readiness_and_model_listing(url):
    assert http("GET", f"{url}/healthz")[:2] == (200, {"status": "alive"})
    status, body, _ = http("GET", f"{url}/readyz")
    assert status == 200 and body["ready"] is True and body["models"] == {MODEL: [2, 1]}
    status, body, _ = http("GET", f"{url}/ingot/models")
    assert body == {"models": [{"name": MODEL, "available_versions": [2, 1], "labels": {"stable": 1, "canary": 2}}]}


def test_prometheus_metrics_use_tf_serving_names_plus_model_version(url):
    http("POST", f"{url}/v1/models/{MODEL}/versions/1:predict", {"instances": colour_images([0]).tolist()})
    http("POST", f"{url}/v1/models/unknown:predict", {"instances": [1]})
    status, text, headers = http("GET", f"{url}/monitoring/prometheus/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    lines = text.splitlines()
    assert "# TYPE :tensorflow:serving:request_count counter" in lines
    assert "# TYPE :tensorflow:serving:request_latency histogram" in lines
    assert "# TYPE :tensorflow:serving:runtime_latency histogram" in lines
    ok = [l for l in lines if l.startswith(f':tensorflow:serving:request_count{{model_name="{MODEL}",status="OK",model_version="1"}}')]
    assert ok and float(ok[0].rsplit(" ", 1)[1]) >= 1
    # Issue 16: names that are not configured count under __other__, never as their own series.
    assert any(l.startswith(':tensorflow:serving:request_count{model_name="__other__",status="NOT_FOUND"') for l in lines)
    assert not any('model_name="unknown"' in l for l in lines)
    assert any(l.startswith(f':tensorflow:serving:request_latency_bucket{{model_name="{MODEL}",API="predict",entrypoint="REST",model_version="1",le="10"}}') for l in lines)
    warm = [l for l in lines if l.startswith(":tensorflow:serving:model_warmup_latency_count{")]
    assert warm and 'status="OK"' in warm[0] and float(warm[0].rsplit(" ", 1)[1]) >= 1  # each version's warm-up
    assert not any("_total" in l or "_created" in l for l in lines)
    for line in lines:  # every sample line parses as "<name>{labels} <number>"
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])
