"""Issue 16 against a real `ingot gateway` process (in front of the serving suite's `ingot serve`):
caller-chosen names cannot grow its memory or its metrics page, a short token file stops it at
start, and feedback reads the whole body, refuses repeated rows, takes class ids without class
names and never shows another party's label."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import yaml

from tests.gateway.conftest import routes_document
from tests.serving.support import MODEL, colour_images, free_port, http, wait_for
from tests.serving.test_hostile import ATTACK_RSS_BOUND, _grpc_error, _huge_name_requests, rss_bytes, split_response

pytestmark = pytest.mark.xdist_group("serving-conformance")

CLI = [sys.executable, "-m", "ingot.cli.main"]
TOKEN = "f" * 40


@pytest.fixture(scope="module")
def gateway(conformance_server, tmp_path_factory):
    """`ingot gateway` as a process, no model repository (class names unknown), a SQLite log."""
    root = tmp_path_factory.mktemp("gateway-hostile")
    routes = root / "routes.yaml"
    routes.write_text(yaml.safe_dump(routes_document(conformance_server)))
    rest, grpc_port = free_port(), free_port()
    log = open(root / "gateway.log", "w+")
    process = subprocess.Popen(
        [*CLI, "gateway", "--routes", str(routes), "--port", str(grpc_port), "--rest_api_port", str(rest),
         "--log-url", f"sqlite:///{root / 'log.db'}", "--log_level", "WARNING"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{rest}"

    def ready():
        assert process.poll() is None, open(root / "gateway.log").read()[-3000:]
        try:
            return http("GET", url + "/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    try:
        wait_for(ready, timeout_s=120, interval_s=0.2, what="the gateway process")
        yield {"process": process, "url": url, "rest_port": rest, "grpc": f"127.0.0.1:{grpc_port}"}
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def predicted(gateway, labels=(0,)) -> tuple[str, list[int]]:
    """(request id, predicted class ids) of one prediction through the gateway."""
    status, answer, headers = http("POST", f"{gateway['url']}/v1/models/{MODEL}:predict",
                                   {"instances": colour_images(list(labels), seed=4).tolist()})
    assert status == 200
    KEYS[headers["x-ingot-request-id"]] = headers["x-ingot-feedback-key"]
    return headers["x-ingot-request-id"], [p["class_ids"] for p in answer["predictions"]]


KEYS: dict[str, str] = {}  # request id -> the x-ingot-feedback-key of its answer


def item(request_id: str, row: int, label) -> dict:
    """A feedback item as the answer's recipient sends it: with the answer's feedback key."""
    return {"request_id": request_id, "row": row, "label": label, "feedback_key": KEYS[request_id]}


def feedback(gateway, body, **headers):
    return http_raw(gateway["rest_port"], [json.dumps(body).encode()], headers)


def http_raw(port: int, segments: list[bytes], headers: dict[str, str] | None = None,
             pause_s: float = 0.0) -> tuple[int, dict]:
    """POST /v1/feedback with the body sent in `segments` (separate TCP writes, `pause_s` apart)."""
    body_length = sum(len(s) for s in segments)
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (f"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}"
               f"Content-Length: {body_length}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request + segments[0])
        for segment in segments[1:]:
            time.sleep(pause_s)
            sock.sendall(segment)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    status, response_headers, body = split_response(b"".join(chunks))
    return status, json.loads(body)


def labelled(gateway, request_id: str, label, *, row: int = 0):
    """Feedback once the row is logged (the log is written a moment after the answer)."""
    def sent():
        status, answer = feedback(gateway, item(request_id, row, label))
        return None if status == 404 else (status, answer)

    return wait_for(sent, timeout_s=20, what="the row to be logged")


def test_huge_model_names_and_labels_leave_the_gateways_memory_and_metrics_flat(gateway):
    import grpc

    pid = gateway["process"].pid
    _, page, _ = http("GET", gateway["url"] + "/monitoring/prometheus/metrics")
    requests = list(_huge_name_requests())
    for method, request in requests[:2] + requests[-2:]:  # the allocator's high-water mark first
        _grpc_error(gateway["grpc"], method, request)
    before = rss_bytes(pid)
    for method, request in requests:
        code, details = _grpc_error(gateway["grpc"], method, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "1-128 letters, digits" in details, details[:300]
    grown = rss_bytes(pid) - before
    assert grown < ATTACK_RSS_BOUND, f"RSS grew {grown / 2**20:.1f} MiB"
    _, after, _ = http("GET", gateway["url"] + "/monitoring/prometheus/metrics")
    assert len(after) < len(page) + (64 << 10) and "0000" not in after


def test_a_body_in_two_tcp_segments_is_read_whole(gateway):
    request_id, classes = predicted(gateway)
    labelled(gateway, request_id, classes[0])  # logged and labelled once
    body = json.dumps(item(request_id, 0, classes[0])).encode()
    status, answer = http_raw(gateway["rest_port"], [body[:30], body[30:]], pause_s=0.3)
    assert status == 200, answer
    assert answer["labels"][0]["created"] is False


def test_a_large_body_within_the_limit_is_not_cut(gateway):
    request_id, classes = predicted(gateway)
    labelled(gateway, request_id, classes[0])
    body = json.dumps([item(request_id, 0, classes[0])]).encode()
    padded = body[:-1] + b" " * (600 << 10) + b"]"  # 600 KiB: over the old ~128 KiB cut
    status, answer = http_raw(gateway["rest_port"], [padded[: 300 << 10], padded[300 << 10:]], pause_s=0.1)
    assert status == 200, answer


def test_repeated_rows_in_one_body_are_refused_naming_them(gateway):
    request_id, classes = predicted(gateway, (0, 1))
    labelled(gateway, request_id, classes[1], row=1)
    items = [item(request_id, 0, 0)] * 3 + [item(request_id, 1, classes[1])]
    status, answer = feedback(gateway, items)
    assert status == 400 and f"request {request_id!r} row 0" in answer["error"]
    assert "more than once" in answer["error"] and "row 1" not in answer["error"]


def test_a_class_id_is_taken_without_class_names_and_a_conflict_hides_the_stored_label(gateway):
    request_id, classes = predicted(gateway)
    status, answer = labelled(gateway, request_id, classes[0])  # an int: a class id
    assert status == 200 and answer["labels"][0]["label_id"] == classes[0]
    other = (classes[0] + 1) % 3
    status, answer = feedback(gateway, item(request_id, 0, other))
    assert (status, answer) == (409, {"error": f"request {request_id!r} row 0 is already labelled with a "
                                               "different label; labels are never overwritten"})


@pytest.mark.parametrize("content", ["", "\n", "short-token\n"])
def test_an_empty_or_short_token_file_stops_the_gateway_at_start(conformance_server, tmp_path, content):
    token = tmp_path / "token"
    token.write_text(content)
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump(routes_document(conformance_server, token_file=str(token))))
    done = subprocess.run([*CLI, "gateway", "--routes", str(routes), "--port", str(free_port()),
                           "--rest_api_port", str(free_port())], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "feedback_token_file" in lines[0] and "at least 32 bytes" in lines[0], done.stderr


def test_a_bearer_header_with_nothing_after_it_never_passes(start_gateway, conformance_server, tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    gateway = start_gateway(routes_document(conformance_server, token_file=str(token)))
    port = int(gateway.rest_url.rsplit(":", 1)[1])
    body = [json.dumps({"request_id": "r-1", "row": 0, "label": 0}).encode()]
    for header in ("Bearer", "Bearer ", "Bearer    ", "bearer\t"):
        status, answer = http_raw(port, body, {"Authorization": header})
        assert status == 401 and "Bearer" in answer["error"], header
    token.write_text("")  # emptied while running: refused, never accepted
    os.utime(token, (time.time() + 5, time.time() + 5))
    status, answer = http_raw(port, body, {"Authorization": "Bearer "})
    assert status == 503 and "at least 32 bytes" in answer["error"]


def test_a_routing_edit_naming_an_empty_token_file_is_refused(start_gateway, conformance_server, tmp_path):
    from tests.gateway.conftest import write_routes

    gateway = start_gateway(routes_document(conformance_server))
    empty = tmp_path / "empty-token"
    empty.write_text("")
    rejections = gateway.gateway.watcher.rejections
    write_routes(gateway.routes_path, routes_document(conformance_server, token_file=str(empty)))
    wait_for(lambda: gateway.gateway.watcher.rejections > rejections, what="the edit to be refused")
    assert gateway.gateway.watcher.table.feedback_token_file == ""
