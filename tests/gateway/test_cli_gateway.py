"""`ingot gateway` on the command line: flags checked before anything binds; a real process that
serves, and on SIGTERM finishes its requests and flushes the log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml

from ingot.cli.main import main as cli
from ingot.inference_log.store import InferenceLogStore
from tests.gateway.conftest import routes_document
from tests.serving.support import colour_images, free_port, wait_for

pytestmark = pytest.mark.xdist_group("serving-conformance")


@pytest.mark.parametrize(("extra", "routes", "message"), [
    ([], {"model": "m", "upstreams": {}}, "routing table upstreams.champion: missing"),
    (["--port", "8600", "--rest_api_port", "8600"], None, "--port and --rest_api_port must differ (both 8600)"),
    (["--port", "70000"], None, "--port=70000 is not a port number"),
    (["--log-url", "mysql://db/x"], None, "inference log URL scheme 'mysql' is not supported"),
    (["--log-queue-size", "0"], None, "--log-queue-size must be positive"),
    (["--max_batch_rows", "-1"], None, "--max_batch_rows must be 0 (no limit) or positive"),
    (["--cache-url", "http://redis:6379"], None, "--cache-url: expected a redis://, rediss:// or unix:// URL"),
    (["--cache-url", "redis://r:6379/0", "--cache-timeout-ms", "0"], None,
     "--cache-timeout-ms: expected milliseconds in (0, 10000], got 0"),
])
def test_bad_flags_and_tables_are_one_line_errors(tmp_path, capsys, extra, routes, message):
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(routes or {"model": "m", "upstreams": {
        "champion": {"rest": "http://127.0.0.1:1", "grpc": "127.0.0.1:1", "version": 1}}}))
    assert cli(["gateway", "--routes", str(path), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ingot: error: ") and message in err and "\n" not in err


def test_the_gateway_process_serves_and_flushes_its_log_on_sigterm(tmp_path, conformance_server):
    import json
    import urllib.request

    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump(routes_document(conformance_server)))
    rest, grpc_port = free_port(), free_port()
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    process = subprocess.Popen(
        [sys.executable, "-m", "ingot.cli.main", "gateway", "--routes", str(routes), "--port", str(grpc_port),
         "--rest_api_port", str(rest), "--log-url", log_url, "--log_level", "WARNING"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def ready():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{rest}/readyz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return process.poll() is not None
        wait_for(ready, timeout_s=120, what="the gateway process")
        assert process.poll() is None
        ids = []
        for labels in ([0], [1, 2]):
            body = json.dumps({"instances": colour_images(labels).tolist()}).encode()
            with urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{rest}/v1/models/colours:predict", data=body), timeout=30) as response:
                ids.append(response.headers["x-ingot-request-id"])
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output.decode()[-2000:]
        assert b"shutting down (finishing in-flight requests, flushing the log)" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with InferenceLogStore.from_url(log_url) as store:
        assert [len(store.rows(request_id)) for request_id in ids] == [1, 2]


def test_the_gateway_takes_the_same_hostile_input_limits_as_the_server(tmp_path):
    """One set of front-end flags for both commands: what `ingot serve` limits, the gateway limits."""
    from ingot.cli.gateway import gateway_options
    from ingot.cli.main import build_parser

    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({"model": "m", "upstreams": {
        "champion": {"rest": "http://127.0.0.1:1", "grpc": "127.0.0.1:1", "version": 1}}}))
    args = build_parser().parse_args([
        "gateway", "--routes", str(path), "--max_batch_rows", "7", "--max_decoded_bytes", "1000",
        "--max_image_pixels", "0", "--http_header_timeout_seconds", "2.5", "--parse_workers", "1"])
    limits = gateway_options(args).limits
    assert (limits.max_batch_rows, limits.max_decoded_bytes, limits.max_image_pixels) == (7, 1000, None)
    assert (limits.header_timeout_s, limits.parse_workers) == (2.5, 1)
