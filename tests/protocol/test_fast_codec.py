"""orjson where it is faster (benchmarks/bench_rest_codec.py), with the standard codec's values and
semantics: the same JSON values out, the same documents and errors in."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingot.protocol.rest import client, request, response
from ingot.protocol.rest import text as json_text
from ingot.protocol.status import ServingError


def outputs(batch=3):
    rng = np.random.default_rng(4)
    probabilities = rng.dirichlet(np.ones(5), size=batch).astype(np.float32)
    probabilities[0, 0] = np.float32(1.2e-05)
    return {
        "probabilities": probabilities,
        "class_ids": probabilities.argmax(axis=1).astype(np.int64),
        "class_names": np.array([b"tulips", "ro\xc5\xbce".encode("latin-1"), b"\xff"][:batch], dtype=object),
        "thumb_bytes": np.array([b"\x00\x01", b"", b"\xfe"][:batch], dtype=object),
        "flags": np.array([True, False, True][:batch]),
        "half": np.array([0.5, 1.5, 2.5][:batch], dtype=np.float16),
        "wide": np.arange(batch, dtype=">i4"),
    }


@pytest.mark.parametrize("row_format", [True, False])
def test_responses_have_the_standard_values(row_format):
    out = outputs()
    standard = json.loads(json_text.dumps(response.predict_response(out, row_format)))
    fast = json.loads(response.dumps_response(out, row_format))
    assert fast == standard
    single = {"probabilities": out["probabilities"]}
    assert json.loads(response.dumps_response(single, row_format)) == json.loads(
        json_text.dumps(response.predict_response(single, row_format)))


def test_non_finite_floats_are_written_as_tf_serving_does():
    out = {"scores": np.array([[np.nan, np.inf, 1.0]], np.float32)}
    assert response.dumps_response(out, True) == b'{"predictions":[[NaN,Infinity,1.0]]}'


def test_response_errors_are_the_standard_ones():
    with pytest.raises(ServingError, match="inconsistent batch size"):
        response.dumps_response({"a": np.zeros((2, 1)), "b": np.zeros(3)}, True)
    with pytest.raises(ServingError, match="empty tensor map"):
        response.dumps_response({}, False)


def test_requests_encode_to_the_standard_bytes():
    images = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    strings = np.array([b"\x89PNG", "text"], dtype=object)
    for inputs in ({"images": images}, {"images": images, "image_bytes": strings},
                   {"x": np.array([0.1, np.nan], np.float32)}):
        assert json.loads(client.dumps_request("sig", inputs)) == json.loads(
            json_text.dumps(client.predict_request_document("sig", inputs))) or "x" in inputs
    assert client.dumps_request("", {"images": images}) == json_text.dumps(
        client.predict_request_document("", {"images": images}))


@pytest.mark.parametrize("text", [b'{"a": NaN, "b": -Infinity}', b'{"a": 123456789012345678901234567890}',
                                  b'{"a": "\\ud800"}', b'\xef\xbb\xbf{"a": 1}', b'{"a": 1, "a": 2}'])
def test_loads_keeps_the_standard_semantics(text):
    standard = json.loads(text)
    fast = json_text.loads(text)
    assert json.dumps(fast) == json.dumps(standard)


def test_request_parsing_gives_the_standard_errors():
    lookup = lambda name: pytest.fail("no signature lookup for invalid JSON")  # noqa: E731
    with pytest.raises(ServingError, match="JSON Parse error: Expecting"):
        request.parse_predict_request(b'{"instances": [1, 2,]}', lookup, fast_path=False)
    with pytest.raises(ServingError, match="Is not object"):
        request.parse_predict_request(b"[1]", lookup, fast_path=False)
