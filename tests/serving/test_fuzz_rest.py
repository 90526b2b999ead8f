"""Hypothesis fuzzing of the REST predict body: whatever arrives, the answer is never a 5xx other
than 503, it is always a JSON error body when not 200, and the server stays up."""

from __future__ import annotations

import base64
import http.client
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingot.serving.config import BatchingOptions, single_model_config
from tests.serving.support import MODEL, publish, start_server

pytestmark = pytest.mark.xdist_group("serving-fuzz")  # one worker for the module's server

KEYS = ["instances", "inputs", "signature_name", "b64", "images", "image_bytes", "x"]
SIGNATURES = ["serving_default", "serving_bytes", "", "nope", "__saved_model_init_op"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.integers(min_value=-5, max_value=300),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=3),
    ),
    max_leaves=24,
)



@st.composite
def pixel_tensors(draw):
    """Near-valid image batches: random shapes around [N, 16, 16, 3] and pixel values around 0..255."""
    dims = [draw(st.integers(0, 3)), draw(st.sampled_from([15, 16])), draw(st.sampled_from([16, 1])),
            draw(st.sampled_from([3, 2]))]
    value = draw(st.one_of(st.integers(-3, 258), st.floats(0, 255), st.booleans(), st.text(max_size=2)))
    nested = value
    for d in reversed(dims):
        nested = [nested] * d
    return nested


b64_items = st.one_of(
    st.binary(max_size=64).map(lambda b: {"b64": base64.b64encode(b).decode()}),
    st.text(max_size=16).map(lambda t: {"b64": t}),
    st.sampled_from([{"b64": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20).decode()},
                     {"b64": base64.b64encode(b"GIF89a").decode()}, {"b64": 5}]),
)

bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"instances": st.one_of(pixel_tensors(), st.lists(b64_items, max_size=3), json_values)},
        optional={"signature_name": st.sampled_from(SIGNATURES)},
    ).map(lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries(
        {"inputs": st.one_of(pixel_tensors(), st.dictionaries(st.sampled_from(KEYS), json_values, max_size=2),
                             st.lists(b64_items, max_size=3))},
        optional={"signature_name": st.sampled_from(SIGNATURES)},
    ).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=64),
    st.integers(1, 60).map(lambda depth: b'{"instances":' + b"[" * depth + b"1" + b"]" * depth + b"}"),
    # The fast integer path with unbalanced or misplaced brackets.
    st.lists(st.sampled_from([b"[", b"]", b"0", b",", b"7"]), max_size=30).map(
        lambda parts: b'{"instances":[' + b"".join(parts) + b"]}"),
    # The same JSON in UTF-16/32, where a multi-byte character can hide brackets from a byte scan.
    st.tuples(json_values, st.sampled_from(["utf-16", "utf-16-be", "utf-32-le"])).map(
        lambda vc: json.dumps({"instances": vc[0]}, ensure_ascii=False).encode(vc[1])),
)

encodings = st.sampled_from(["", "", "gzip", "deflate", "br", "gzip, gzip"])


def _encode(body: bytes, encoding: str, mangle: int) -> bytes:
    import gzip
    import zlib

    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "deflate":
        body = zlib.compress(body)
    if mangle == 1:
        body = body[: len(body) // 2]  # truncated stream
    elif mangle == 2:
        body = b"\x00garbage" + body
    return body


@pytest.fixture(scope="module")
def target(exports, tmp_path_factory):
    base = tmp_path_factory.mktemp("repo")
    publish(exports["v1"], base)
    server = start_server(single_model_config(MODEL, base / MODEL),
                          batching=BatchingOptions(max_batch_size=4, num_batch_threads=1), max_body_bytes=64 << 10)
    connection = http.client.HTTPConnection("127.0.0.1", server.server.rest_port, timeout=30)
    yield server, connection
    connection.close()
    server.stop()


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies, path=st.sampled_from([f"/v1/models/{MODEL}:predict", f"/v1/models/{MODEL}/versions/1:predict",
                                           f"/v1/models/{MODEL}/labels/x:predict"]))
def test_predict_never_answers_a_5xx_other_than_503(target, body, path):
    _, connection = target
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    assert response.status < 500 or response.status == 503, (response.status, payload[:300])
    answer = json.loads(payload)
    if response.status == 200:
        assert "predictions" in answer or "outputs" in answer
    else:
        assert set(answer) == {"error"} and answer["error"]


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies, encoding=encodings, mangle=st.integers(0, 2),
       path=st.one_of(st.sampled_from([f"/v1/models/{MODEL}:predict", "/v1/models/%0a:predict", "/v1/models/%0a"]),
                      st.integers(1, 6000).map(lambda n: f"/v1/models/{MODEL}/versions/{'9' * n}:predict")))
def test_compressed_bodies_and_odd_paths_get_json_answers(target, body, encoding, mangle, path):
    _, connection = target
    headers = {"Content-Type": "application/json"}
    if encoding:
        headers["Content-Encoding"] = encoding
    connection.request("POST", path, body=_encode(body, encoding, mangle), headers=headers)
    response = connection.getresponse()
    payload = response.read()
    assert response.status < 500 or response.status == 503, (response.status, payload[:300])
    assert response.getheader("Content-Type", "").startswith("application/json"), payload[:200]
    answer = json.loads(payload)
    assert ("predictions" in answer or "outputs" in answer) if response.status == 200 else set(answer) == {"error"}
    if response.getheader("Connection", "").lower() == "close":
        connection.close()


def test_server_is_alive_after_fuzzing(target):
    server, connection = target
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read()) == {"status": "alive"}
    assert server.manager.readiness()["ready"]
