"""The gateway in front of a real `ingot serve`: headers, unchanged answers, assignment, mirror,
fallback, 503, hot reload under load, log rows, one input hash for three encodings, hostile input."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.gateway.conftest import (
    dead_upstream,
    flushed_rows,
    routes_document,
    write_routes,
)
from tests.serving.support import (
    MODEL,
    colour_images,
    grpc_stubs,
    http,
    predict_request,
    wait_for,
)

pytestmark = pytest.mark.xdist_group("serving-conformance")

PREDICT = f"/v1/models/{MODEL}:predict"


@pytest.fixture
def upstream(conformance_server):
    return conformance_server


def predict(gateway, images=None, headers=None, path=PREDICT, document=None):
    import json
    import urllib.request

    body = document if document is not None else {"instances": (images if images is not None else colour_images([0])).tolist()}
    request = urllib.request.Request(gateway.rest_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, err.read(), {k.lower(): v for k, v in err.headers.items()}


def test_rest_answers_are_the_upstreams_unchanged_with_the_gateway_headers(start_gateway, upstream):
    gateway = start_gateway(routes_document(upstream))
    images = colour_images([0, 1, 2], seed=5)
    status, body, headers = predict(gateway, images)
    direct_status, direct, _ = predict(upstream, images, path=f"/v1/models/{MODEL}/versions/2:predict")
    assert (status, body) == (direct_status, direct) == (200, direct)
    assert headers["x-ingot-variant"] == "champion" and headers["x-ingot-model-version"] == "2"
    assert len(headers["x-ingot-request-id"]) == 32 and len(headers["x-ingot-feedback-key"]) == 64
    assert "x-ingot-client-request-id" not in headers
    # The log key is always the server's; a caller's id (either header) is kept beside it and echoed.
    _, _, again = predict(gateway, images, headers={"x-ingot-request-id": "client-id-7"})
    assert again["x-ingot-request-id"] != "client-id-7" and again["x-ingot-client-request-id"] == "client-id-7"
    _, _, named = predict(gateway, images, headers={"x-ingot-client-request-id": "client-id-8"})
    assert named["x-ingot-client-request-id"] == "client-id-8" and len(named["x-ingot-request-id"]) == 32
    _, _, bad = predict(gateway, images, headers={"x-ingot-request-id": "has spaces and \u00e9"})
    assert "x-ingot-client-request-id" not in bad and len(bad["x-ingot-request-id"]) == 32


def test_grpc_answers_carry_the_gateway_metadata(start_gateway, upstream):
    import grpc

    gateway = start_gateway(routes_document(upstream, weight=100))
    channel, prediction, _ = grpc_stubs(gateway.grpc_target)
    try:
        response, call = prediction.Predict.with_call(predict_request(images=colour_images([1])), timeout=30,
                                                      metadata=(("x-ingot-client-request-id", "grpc-req-1"),))
        metadata = dict(call.initial_metadata())
        assert metadata["x-ingot-variant"] == "challenger" and metadata["x-ingot-model-version"] == "1"
        assert metadata["x-ingot-client-request-id"] == "grpc-req-1"
        assert len(metadata["x-ingot-request-id"]) == 32 and len(metadata["x-ingot-feedback-key"]) == 64
        assert response.model_spec.version.value == 1
        with pytest.raises(grpc.RpcError) as err:
            bad = predict_request(images=np.zeros((1, 16, 3), np.uint8))
            prediction.Predict(bad, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(err.value.initial_metadata())["x-ingot-variant"] == "challenger"
    finally:
        channel.close()


def test_pin_sticky_and_versions_route_to_the_right_variant(start_gateway, upstream):
    gateway = start_gateway(routes_document(upstream, weight=50))
    pinned = [predict(gateway, headers={"x-ingot-variant": "challenger"})[2] for _ in range(5)]
    assert {(h["x-ingot-variant"], h["x-ingot-model-version"]) for h in pinned} == {("challenger", "1")}
    for caller in ("alice", "bob", "carol", "dave"):
        seen = {predict(gateway, headers={"x-ingot-caller": caller})[2]["x-ingot-variant"] for _ in range(4)}
        assert len(seen) == 1  # sticky
    _, _, by_version = predict(gateway, path=f"/v1/models/{MODEL}/versions/1:predict")
    assert (by_version["x-ingot-variant"], by_version["x-ingot-model-version"]) == ("challenger", "1")
    _, _, by_label = predict(gateway, path=f"/v1/models/{MODEL}/labels/canary:predict")
    assert (by_label["x-ingot-variant"], by_label["x-ingot-model-version"]) == ("champion", "2")
    status, body, _ = predict(gateway, headers={"x-ingot-variant": "shadow"})
    assert status == 400 and b"x-ingot-variant must be one of champion, challenger" in body


def test_mirror_never_changes_the_answer_and_logs_a_shadow_row(start_gateway, upstream):
    gateway = start_gateway(routes_document(upstream, mirror=100))
    plain = start_gateway(routes_document(upstream))
    images = colour_images([2, 0], seed=9)
    status, body, headers = predict(gateway, images)
    assert (status, body) == predict(plain, images)[:2]
    assert headers["x-ingot-variant"] == "champion"
    rows = flushed_rows(gateway, headers["x-ingot-request-id"], at_least=4)
    by_variant = {(r["variant"], r["row"]): r for r in rows}
    assert set(by_variant) == {("champion", 0), ("champion", 1), ("shadow", 0), ("shadow", 1)}
    shadow = by_variant[("shadow", 0)]
    assert (shadow["assignment"], shadow["model_version"], shadow["status"]) == ("mirror", 1, "OK")
    assert shadow["input_sha256"] == by_variant[("champion", 0)]["input_sha256"]


def test_a_down_challenger_falls_back_to_the_champion_and_is_counted(start_gateway, upstream):
    gateway = start_gateway(routes_document(upstream, weight=100, challenger_target=dead_upstream()))
    answers = [predict(gateway) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 200]
    assert {(a[2]["x-ingot-variant"], a[2]["x-ingot-model-version"]) for a in answers} == {("champion", "2")}
    rows = flushed_rows(gateway, answers[0][2]["x-ingot-request-id"])
    assert (rows[0]["variant"], rows[0]["assignment"], rows[0]["status"]) == ("champion", "fallback", "OK")
    _, metrics, _ = http("GET", gateway.rest_url + "/monitoring/prometheus/metrics")
    assert f'ingot_gateway_fallbacks_total{{model="{MODEL}"}} 3.0' in metrics


def test_a_down_champion_is_a_503_json_error_and_grpc_unavailable(start_gateway, upstream):
    import grpc

    gateway = start_gateway(routes_document(upstream, champion_target=dead_upstream(), challenger=None))
    status, body, headers = predict(gateway)
    assert status == 503 and headers["content-type"].startswith("application/json")
    assert b'"error"' in body and b"champion model server is unreachable" in body
    channel, prediction, _ = grpc_stubs(gateway.grpc_target)
    try:
        with pytest.raises(grpc.RpcError) as err:
            prediction.Predict(predict_request(images=colour_images([0])), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()


def test_a_routing_edit_under_load_loses_no_request_and_a_broken_edit_is_refused(start_gateway, upstream):
    gateway = start_gateway(routes_document(upstream, weight=0))
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            status, _, headers = predict(gateway)
            results.append((status, headers.get("x-ingot-variant", "")))

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(load) for _ in range(4)]
        wait_for(lambda: len(results) > 10, what="load running")
        write_routes(gateway.routes_path, routes_document(upstream, weight=100))
        wait_for(lambda: results[-1][1] == "challenger", what="the new weights taking effect")
        broken = routes_document(upstream, weight=100)
        broken["weights"]["challenger"] = 250
        write_routes(gateway.routes_path, broken)
        time.sleep(0.5)
        stop.set()
        for future in futures:
            future.result()
    assert {status for status, _ in results} == {200}
    assert results[-1][1] == "challenger"  # the last good table kept serving
    assert gateway.gateway.watcher.rejections == 1 and gateway.gateway.watcher.reloads == 1
    _, metrics, _ = http("GET", gateway.rest_url + "/monitoring/prometheus/metrics")
    assert "ingot_gateway_routing_rejections_total 1.0" in metrics


def test_every_request_errors_included_is_logged_with_its_variant_and_version(start_gateway, upstream):
    gateway = start_gateway(routes_document(upstream, weight=100))
    images = colour_images([0, 1, 2], seed=1)
    _, _, ok = predict(gateway, images, headers={"x-ingot-caller": "zed"})
    rows = flushed_rows(gateway, ok["x-ingot-request-id"], at_least=3)
    assert [(r["row"], r["variant"], r["assignment"], r["model_version"], r["status"]) for r in rows] == [
        (i, "challenger", "sticky", 1, "OK") for i in range(3)]
    assert all(r["experiment"] == "colours-exp" and r["signature"] == "serving_default" for r in rows)
    assert all(r["predicted_class_name"] in ("red", "green", "blue") and 0 < r["confidence"] <= 1 for r in rows)
    status, _, bad = predict(gateway, document={"instances": [[[1, 2, 3]]]})  # refused by the front end
    assert status == 400
    [row] = flushed_rows(gateway, bad["x-ingot-request-id"])
    assert (row["variant"], row["model_version"], row["status"], row["predicted_class_id"]) == (
        "challenger", 1, "INVALID_ARGUMENT", None)
    status, _, upstream_error = predict(gateway, np.zeros((9, 16, 16, 3), np.uint8))  # refused upstream
    assert status == 400
    [row] = flushed_rows(gateway, upstream_error["x-ingot-request-id"], at_least=9)[:1]
    assert row["status"] == "INVALID_ARGUMENT"


def test_three_encodings_of_one_image_log_one_input_hash(start_gateway, upstream):
    gateway = start_gateway(routes_document(upstream))
    image = colour_images([1], seed=11)
    expected = hashlib.sha256(image[0].tobytes()).hexdigest()
    ids = [predict(gateway, document={"instances": image.tolist()})[2]["x-ingot-request-id"],
           predict(gateway, document={"inputs": image.tolist()})[2]["x-ingot-request-id"]]
    channel, prediction, _ = grpc_stubs(gateway.grpc_target)
    try:
        _, call = prediction.Predict.with_call(predict_request(images=image), timeout=30)
        ids.append(dict(call.initial_metadata())["x-ingot-request-id"])
    finally:
        channel.close()
    rows = [flushed_rows(gateway, request_id)[0] for request_id in ids]
    assert {r["input_sha256"] for r in rows} == {expected}
    pixels = image[0].astype(np.float64)
    assert all(r["input_mean"] == pytest.approx(pixels.mean()) and r["input_std"] == pytest.approx(pixels.std())
               for r in rows)


HOSTILE = [
    (PREDICT, b"{bad json"),
    (PREDICT, b""),
    (PREDICT, b'{"instances": ' + b"[" * 40 + b"]" * 40 + b"}"),
    (PREDICT, b'{"instances": [1], "inputs": [1]}'),
    (PREDICT, b'{"signature_name": "serving_bytes", "instances": [{"b64": "%%%"}]}'),
    (PREDICT, b'{"instances": [[[[1e400]]]]}'),
    (PREDICT, b" " * (300 << 10)),
    (f"/v1/models/{MODEL}:explode", b"{}"),
    ("/v1/models/other:predict", b'{"instances": [1]}'),
]


@pytest.mark.parametrize(("path", "raw"), HOSTILE)
def test_hostile_input_gets_the_servers_own_4xx_json_errors(start_gateway, upstream, path, raw):
    gateway = start_gateway(routes_document(upstream))
    got = http("POST", gateway.rest_url + path, raw=raw)
    direct = http("POST", upstream.rest_url + path, raw=raw)
    assert 400 <= got[0] < 500 and (got[0], got[1]) == (direct[0], direct[1])
    assert set(got[1]) == {"error"}


def test_nothing_from_the_caller_chooses_the_upstream(start_gateway, upstream):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Canary(BaseHTTPRequestHandler):
        def do_POST(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    canary = ThreadingHTTPServer(("127.0.0.1", 0), Canary)
    threading.Thread(target=canary.serve_forever, daemon=True).start()
    elsewhere = f"127.0.0.1:{canary.server_address[1]}"
    try:
        gateway = start_gateway(routes_document(upstream))
        for path, headers in [
            (f"/v1/models/http%3A%2F%2F{elsewhere}:predict", {}),
            (f"/v1/models/{MODEL}/labels/..%2F..%2F{elsewhere}:predict", {}),
            (PREDICT, {"Host": elsewhere, "X-Forwarded-Host": elsewhere, "x-ingot-upstream": f"http://{elsewhere}"}),
        ]:
            status, _, _ = predict(gateway, path=path, headers=headers)
            assert status in (200, 400, 404)
    finally:
        canary.shutdown()
    assert hits == []
