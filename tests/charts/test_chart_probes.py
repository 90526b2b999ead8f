"""Pre-warm: a pod is ready only when TF Serving reports the model AVAILABLE; liveness never kills a loading pod.

The startup/readiness command is run for real with bash against a loopback HTTP server that answers
the status endpoint the way TF Serving does, in each model state.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .chart_support import all_containers
from .conftest import SCENARIOS

MODEL = "ingot"


def _server_container(rendered, variant="champion"):
    deployment = rendered.get("Deployment", f"ingot-{variant}")
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "tensorflow-serving")


def _status_body(*states: str, pretty: bool = True) -> str:
    """TF Serving's GetModelStatus as JSON (its REST handler prints the proto with whitespace)."""
    body = {"model_version_status": [
        {"version": str(3 + i), "state": state,
         "status": {"error_code": "OK" if state != "END" else "UNKNOWN", "error_message": ""}}
        for i, state in enumerate(states)
    ]}
    return json.dumps(body, indent=1 if pretty else None)


@contextmanager
def tf_serving_status_stub(status: int, body: str) -> Iterator[int]:
    """A loopback server answering GET /v1/models/<MODEL> like TF Serving; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == f"/v1/models/{MODEL}":
                code, payload = status, body
            else:
                code, payload = 404, json.dumps({"error": f"Servable not found for request: {self.path}"})
            data = payload.encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _run_probe(command: list[str], port: int) -> int:
    # command = [bash, -c, script, $0, rest port, model name]; only the port is swapped for the stub's.
    return subprocess.run([*command[:4], str(port), *command[5:]], capture_output=True, timeout=20).returncode


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_startup_and_readiness_probes_ask_the_model_status_endpoint(render_scenario, scenario):
    rendered = render_scenario(scenario)
    servers = [d for d in rendered.of_kind("Deployment")
               if d["metadata"]["labels"]["app.kubernetes.io/component"] == "model-server"]
    assert servers
    for deployment in servers:
        [server] = deployment["spec"]["template"]["spec"]["containers"]
        if server["name"] == "ingot-serve":  # a cascade's small server: its /readyz is 503 until a version is AVAILABLE
            for probe in ("startupProbe", "readinessProbe"):
                assert server[probe]["httpGet"] == {"path": "/readyz", "port": "http"}
            continue
        assert server["name"] == "tensorflow-serving"
        for probe in ("startupProbe", "readinessProbe"):
            command = server[probe]["exec"]["command"]
            assert command[:2] == ["bash", "-c"]
            assert "GET /v1/models/%s" in command[2] and '"AVAILABLE' in command[2]
            assert command[4:] == ["8501", MODEL], "probe must target the REST port and the configured model"
        assert "httpGet" not in server["readinessProbe"], "an httpGet passes while the model is still LOADING"


def test_liveness_waits_for_startup_and_tolerates_in_place_reloads(minimal):
    server = _server_container(minimal)
    # A startup probe holds liveness and readiness back until the model first loaded...
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "loading + warm-up needs minutes"
    # ...and liveness is a cheap TCP check of the gRPC port, which stays open during later reloads.
    assert server["livenessProbe"] == {"tcpSocket": {"port": "grpc"}, "periodSeconds": 20, "timeoutSeconds": 5,
                                       "failureThreshold": 6}


@pytest.mark.parametrize(
    ("states", "pretty", "expected"),
    [
        (("AVAILABLE",), True, 0),
        (("AVAILABLE",), False, 0),
        (("LOADING",), True, 1),  # loading or replaying warm-up records
        (("START",), True, 1),
        (("END",), True, 1),  # failed to load, or unloaded
        (("AVAILABLE", "LOADING"), True, 0),  # in-place swap: the old version still serves
        (("UNLOADING", "AVAILABLE"), True, 0),
    ],
)
def test_readiness_command_passes_only_when_a_version_is_available(minimal, states, pretty, expected):
    command = _server_container(minimal)["readinessProbe"]["exec"]["command"]
    with tf_serving_status_stub(200, _status_body(*states, pretty=pretty)) as port:
        assert _run_probe(command, port) == expected


def test_readiness_command_fails_for_an_unknown_model_and_a_closed_port(minimal):
    command = _server_container(minimal)["startupProbe"]["exec"]["command"]
    with tf_serving_status_stub(404, json.dumps({"error": "Could not find any versions of model ingot"})) as port:
        assert _run_probe(command, port) == 1
    with socket.socket() as sock:  # a port nobody listens on: the server has not started yet
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    assert _run_probe(command, free_port) == 1


def test_rollout_keeps_capacity_until_new_pods_are_warm(canary_istio):
    for deployment in canary_istio.of_kind("Deployment"):
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_warm_up_and_server_flags(minimal, canary_gateway):
    args = _server_container(minimal)["args"]
    assert "--enable_model_warmup=true" in args
    assert "--rest_api_timeout_in_ms=30000" in args
    assert "--model_config_file=/etc/ingot/model/models.config" in args
    assert "--model_config_file_poll_wait_seconds=30" in args
    assert "--monitoring_config_file=/etc/ingot/server/monitoring.config" in args
    # The stable/canary labels are in the config at start-up, before the version is loaded.
    assert "--allow_version_labels_for_unavailable_models=true" in args
    # Not the image's entrypoint script, which serves a single model from --model_name/--model_base_path.
    assert _server_container(minimal)["command"] == ["/usr/bin/tensorflow_model_server"]
    assert _server_container(canary_gateway, "challenger")["args"] == args


def test_every_container_has_requests_and_limits(render_scenario):
    for scenario in SCENARIOS:
        for ref, _, spec in render_scenario(scenario).pod_specs():
            for container in all_containers(spec):
                for section in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(container["resources"][section]), (scenario, ref, container["name"])
