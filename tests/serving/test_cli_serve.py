"""`ingot serve` as a real process: TF Serving flags, the printed commands, `ingot predict`
against it over REST and gRPC, and graceful shutdown on SIGTERM with a request in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.serving.support import MODEL, colour_images, free_port, http, png, publish, wait_for

pytestmark = pytest.mark.xdist_group("serving-cli")  # one worker: shared server, ordered tests

CLI = [sys.executable, "-m", "ingot.cli.main"]


@pytest.fixture(scope="module")
def served(exports, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    publish(exports["v1"], root / "repo")
    batching = root / "batching.config"
    # Requests wait up to 1.5 s for company: long enough to catch one in flight at SIGTERM.
    batching.write_text("max_batch_size { value: 8 } batch_timeout_micros { value: 1500000 } num_batch_threads { value: 1 }")
    grpc_port, rest_port = free_port(), free_port()
    log = open(root / "serve.log", "w+")
    process = subprocess.Popen(
        [*CLI, "serve", f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_name={MODEL}",
         f"--model_base_path={root / 'repo' / MODEL}", "--enable_batching", f"--batching_parameters_file={batching}",
         "--file_system_poll_wait_seconds=1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    url = f"http://127.0.0.1:{rest_port}"

    def ready():
        assert process.poll() is None, open(root / "serve.log").read()[-3000:]
        try:
            return http("GET", url + "/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    try:
        wait_for(ready, timeout_s=90, interval_s=0.2, what="ingot serve to become ready")
        images = []
        for label in (0, 2):
            path = root / f"colour{label}.png"
            path.write_bytes(png(colour_images([label], seed=21)[0]))
            images.append(path)
        yield {"process": process, "url": url, "grpc": f"grpc://127.0.0.1:{grpc_port}", "images": images,
               "log": root / "serve.log"}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


def test_serve_prints_the_commands_to_try(served):
    text = served["log"].read_text()
    assert f"curl {served['url']}/v1/models/{MODEL}" in text
    assert f"ingot predict --server {served['url']} --model {MODEL}" in text


def test_ingot_predict_over_rest_prints_class_and_confidence(served):
    result = subprocess.run([*CLI, "predict", "--server", served["url"], *map(str, served["images"])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert [(path, name) for path, name, _ in lines] == [(str(served["images"][0]), "red"), (str(served["images"][1]), "blue")]
    assert all(0.0 < float(confidence) <= 1.0 for _, _, confidence in lines)


def test_ingot_predict_over_grpc(served, capsys):
    from ingot.cli.main import main

    assert main(["predict", "--server", served["grpc"], "--model", MODEL, "--json", str(served["images"][1])]) == 0
    out = capsys.readouterr().out
    assert '"class_name": "blue"' in out


def test_sigterm_finishes_in_flight_requests_then_exits(served):
    body = {"instances": colour_images([2], seed=3).tolist()}
    result = {}
    waiter = threading.Thread(target=lambda: result.update(answer=http("POST", f"{served['url']}/v1/models/{MODEL}:predict", body)))
    waiter.start()
    time.sleep(0.6)  # the request is now waiting in the batch queue
    served["process"].send_signal(signal.SIGTERM)
    waiter.join(20)
    assert served["process"].wait(30) == 0
    status, answer, _ = result["answer"]
    assert status == 200 and answer["predictions"][0]["class_names"] == "blue"
    assert "shutting down" in served["log"].read_text()
