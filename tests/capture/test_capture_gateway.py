"""Capture in the gateway, in front of a real `ingot serve`: the stored input is the one the log
names, `x-ingot-capture: off` is honoured, and neither a full queue nor a down store costs a
request; the counters show on the metrics endpoint."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.gateway.conftest import flushed_rows, routes_document
from tests.serving.support import MODEL, colour_images, grpc_stubs, predict_request

pytestmark = pytest.mark.xdist_group("serving-conformance")

PREDICT = f"/v1/models/{MODEL}:predict"


@pytest.fixture
def upstream(conformance_server):
    return conformance_server


def post(gateway, document, headers=None):
    request = urllib.request.Request(gateway.rest_url + PREDICT, data=json.dumps(document).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}


def captured_doc(upstream, sample=1.0, **extra):
    return {**routes_document(upstream), "capture": {"sample": sample, "max_bytes": "1GiB", "retention_days": 30,
                                                     **extra}}


def test_sampled_rows_are_stored_under_the_logged_hash_and_opt_out_is_honoured(start_gateway, upstream, tmp_path):
    from PIL import Image

    store = tmp_path / "capture"
    gateway = start_gateway(captured_doc(upstream), capture_url=str(store))
    images = colour_images([0, 1], seed=3)
    status, headers = post(gateway, {"instances": images.tolist()})
    assert status == 200
    rows = flushed_rows(gateway, headers["x-ingot-request-id"], at_least=2)
    assert gateway.gateway.capture.flush(20)
    for row in rows:
        sha = row["input_sha256"]
        assert row["captured"] is True
        path = store / MODEL / sha[:2] / f"{sha}.png"
        pixels = np.asarray(Image.open(path))
        assert np.array_equal(pixels, images[row["row"]])  # lossless: the tensor the model saw
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == sha

    off = colour_images([2], seed=4)
    status, headers = post(gateway, {"instances": off.tolist()}, {"x-ingot-capture": "off"})
    assert status == 200
    (row,) = flushed_rows(gateway, headers["x-ingot-request-id"])
    assert row["captured"] is False
    assert gateway.gateway.capture.flush(20)
    assert not (store / MODEL / row["input_sha256"][:2] / f"{row['input_sha256']}.png").exists()

    # gRPC requests are captured the same way.
    channel, prediction, _ = grpc_stubs(gateway.grpc_target)
    try:
        grpc_image = colour_images([1], seed=9)
        _, call = prediction.Predict.with_call(predict_request(images=grpc_image), timeout=30)
    finally:
        channel.close()
    (row,) = flushed_rows(gateway, dict(call.initial_metadata())["x-ingot-request-id"])
    assert row["captured"] is True
    assert gateway.gateway.capture.flush(20)
    assert (store / MODEL / row["input_sha256"][:2] / f"{row['input_sha256']}.png").exists()


def test_serving_bytes_requests_store_the_encoded_bytes_as_sent(start_gateway, upstream, tmp_path):
    from PIL import Image

    store = tmp_path / "capture"
    gateway = start_gateway(captured_doc(upstream), capture_url=str(store))
    buffer = io.BytesIO()
    Image.fromarray(colour_images([2], seed=8)[0]).save(buffer, format="PNG")
    encoded = buffer.getvalue()
    status, headers = post(gateway, {"signature_name": "serving_bytes",
                                     "instances": [{"b64": base64.b64encode(encoded).decode()}]})
    assert status == 200
    (row,) = flushed_rows(gateway, headers["x-ingot-request-id"])
    sha = hashlib.sha256(encoded).hexdigest()
    assert row["input_sha256"] == sha and row["captured"] is True
    assert gateway.gateway.capture.flush(20)
    assert (store / MODEL / sha[:2] / f"{sha}.png").read_bytes() == encoded


def test_sample_zero_point_five_stores_about_half(start_gateway, upstream, tmp_path):
    gateway = start_gateway(captured_doc(upstream, sample=0.5), capture_url=str(tmp_path / "c"))
    kept = 0
    for part in range(8):
        images = colour_images([i % 3 for i in range(8)], seed=21 + part)
        status, headers = post(gateway, {"instances": images.tolist()})
        assert status == 200
        rows = flushed_rows(gateway, headers["x-ingot-request-id"], at_least=8)
        kept += sum(row["captured"] for row in rows)
    assert 16 <= kept <= 48  # Binomial(64, 0.5): outside this range with probability < 1e-4


def test_a_full_queue_and_a_down_store_never_fail_a_request(start_gateway, upstream, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("the store's parent is a file, so every write fails")
    gateway = start_gateway(captured_doc(upstream), capture_url=str(blocker / "capture"),
                            capture_queue_bytes=4 * 16 * 16 * 3)

    def one(i):
        images = colour_images([i % 3] * 4, seed=100 + i)
        return post(gateway, {"instances": images.tolist()})[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(80)))
    assert statuses == [200] * 80
    writer = gateway.gateway.capture
    assert writer.flush(30)
    stats = writer.stats
    assert stats.written == 0
    assert stats.dropped["store_error"] + stats.dropped["queue_full"] + stats.deduplicated == stats.offered == 320
    assert stats.dropped["store_error"] >= 1 and stats.queued_bytes == 0
    text = urllib.request.urlopen(gateway.rest_url + "/monitoring/prometheus/metrics", timeout=10).read().decode()
    assert f'ingot_gateway_capture_dropped_total{{reason="store_error"}} {float(stats.dropped["store_error"])}' in text
