"""`ingot rollout` end to end on one machine (SQLite, a routing file, model servers' status
stubbed), the judge endpoint over a real socket, the example Argo/Flagger manifests against the
JSON it serves, and the HTML report."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from sqlalchemy.exc import OperationalError

from ingot.cli.main import main
from ingot.registry import Registry, Stage
from ingot.rollout.controller import Controller
from ingot.rollout.service import JudgeServer, RolloutMetrics, handle
from tests.registry.helpers import publish
from tests.rollout.support import MODEL, log_rows

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def setup(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with Registry.from_url(url) as registry:
        publish(registry, MODEL, 1)
        publish(registry, MODEL, 2)
    monkeypatch.setenv("INGOT_REGISTRY_URL", url)
    monkeypatch.delenv("INGOT_LOG_URL", raising=False)
    monkeypatch.delenv("INGOT_ROLLOUT_TARGET", raising=False)
    # The servers' model status API: every version is AVAILABLE (no real servers in this test).
    monkeypatch.setattr("ingot.rollout.actuators.version_available", lambda rest, model, version, timeout_s=2.0: True)
    return SimpleNamespace(url=url, routes=tmp_path / "routes.yaml", tmp=tmp_path)


def start(setup, *extra: str) -> None:
    assert main(["rollout", "start", MODEL, "--challenger", "2", "--steps", "50", "--routes", str(setup.routes),
                 "--champion-rest", "http://127.0.0.1:8501", "--challenger-rest", "http://127.0.0.1:8511",
                 "--champion-grpc", "127.0.0.1:8500", "--challenger-grpc", "127.0.0.1:8510",
                 "--actor", "alice", *extra]) == 0


def experiment(setup) -> str:
    return yaml.safe_load(setup.routes.read_text())["experiment"]


def test_start_run_status_rollback_and_report(setup, capsys):
    start(setup)
    assert "rollout #1 digits-v2-vs-v1-" in capsys.readouterr().out
    assert main(["rollout", "run", "--once"]) == 0
    assert "analyzing" in capsys.readouterr().out
    table = yaml.safe_load(setup.routes.read_text())
    assert table["weights"] == {"challenger": 50}
    with Registry.from_url(setup.url) as registry:
        log_rows(registry.engine, table["experiment"], "champion", requests=2000, labelled=2000, correct=1440)
        log_rows(registry.engine, table["experiment"], "challenger", requests=2000, labelled=2000, correct=1340,
                 latency_ms=12.0)
    assert main(["rollout", "status", MODEL]) == 0
    out = capsys.readouterr().out
    assert "state analyzing" in out and "decision: rollback" in out and "[-0.0943, -0.0057]" in out
    assert "sample-ratio check: p = 1" in out  # 2000 vs 2000 assigned at 50%
    assert re.search(r"challenger\s+2000\s+2000\s+67.00%\s+0.00%\s+12.0", out)
    assert main(["rollout", "run", "--once"]) == 0
    assert "rolled_back" in capsys.readouterr().out
    assert yaml.safe_load(setup.routes.read_text())["weights"] == {"challenger": 0}
    assert main(["rollout", "status"]) == 0  # every model's latest rollout
    assert "digits: rollout #1" in capsys.readouterr().out
    assert main(["rollout", "status", MODEL, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["state"] == "rolled_back" and doc["decision"] == "rollback"
    assert doc["statistic"] == pytest.approx(65.2, abs=0.1)
    assert [t["to_state"] for t in doc["transitions"]][-2:] == ["rolling_back", "rolled_back"]
    report = setup.tmp / "report.html"
    assert main(["rollout", "report", MODEL, "-o", str(report)]) == 0
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "rolled_back" in page and "below 0" in page
    assert "67.00%" in page and "72.00%" in page


def test_manual_overrides_and_errors_are_one_line(setup, capsys):
    assert main(["rollout", "promote", MODEL, "--reason", "x"]) == 1
    assert "has no unfinished rollout" in capsys.readouterr().err
    start(setup)
    assert main(["rollout", "start", MODEL, "--challenger", "2", "--routes", str(setup.routes),
                 "--champion-rest", "http://a", "--challenger-rest", "http://b", "--champion-grpc", "a:1",
                 "--challenger-grpc", "b:1"]) == 1
    assert "already has an unfinished rollout" in capsys.readouterr().err
    assert main(["rollout", "start", MODEL, "--challenger", "3", "--routes", "r"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--champion-rest and --champion-grpc are required" in err
    assert main(["rollout", "start", "other", "--challenger", "3", "--steps", "50,10", "--routes", "r",
                 "--champion-rest", "http://a", "--challenger-rest", "http://b", "--champion-grpc", "a:1",
                 "--challenger-grpc", "b:1"]) == 1
    assert "must increase" in capsys.readouterr().err
    assert main(["rollout", "promote", MODEL, "--reason", "validated offline", "--actor", "carol"]) == 0
    assert "promoted" in capsys.readouterr().out
    with Registry.from_url(setup.url) as registry:
        assert registry.champion(MODEL).version == 2
        assert registry.get_version(MODEL, 1).stage is Stage.ARCHIVED
        assert registry.events(MODEL, 2)[-1].actor == "carol"


def judge(setup) -> tuple[Controller, Registry]:
    registry = Registry.from_url(setup.url)
    return Controller(registry), registry


def test_judge_endpoint_serves_the_verdict_and_the_gates(setup):
    start(setup)
    assert main(["rollout", "run", "--once"]) == 0
    controller, registry = judge(setup)
    metrics = RolloutMetrics()
    server = JudgeServer(controller, metrics, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        log_rows(registry.engine, experiment(setup), "champion", requests=2000, labelled=2000, correct=1440)
        log_rows(registry.engine, experiment(setup), "challenger", requests=2000, labelled=2000, correct=1340)
        status, doc = fetch(f"{base}/v1/rollouts/{MODEL}/verdict")
        assert status == 200 and doc["decision"] == "rollback" and doc["state"] == "analyzing"
        assert doc["counts"]["challenger"]["labelled"] == 2000 and len(doc["interval"]) == 2
        assert fetch(f"{base}/v1/rollouts/{MODEL}/gate/promote", post=True)[0] == 412
        assert fetch(f"{base}/v1/rollouts/{MODEL}/gate/rollback", post=True)[0] == 200
        assert fetch(f"{base}/v1/rollouts/nosuch/verdict")[0] == 404
        assert fetch(f"{base}/v1/rollouts/{MODEL}/verdict", post=True)[0] == 405
        metrics.observe(controller.store.latest(MODEL))
        with urllib.request.urlopen(f"{base}/metrics") as response:
            text = response.read().decode()
        assert 'ingot_rollout_state{model="digits",state="analyzing"} 1.0' in text
        assert 'ingot_rollout_challenger_weight{model="digits"} 50.0' in text
    finally:
        server.stop()
        registry.close()


def test_judge_answers_503_when_the_database_is_down(setup):
    start(setup)
    controller, registry = judge(setup)

    def down(model):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    controller.store.latest = down  # type: ignore[method-assign]
    try:
        status, body = handle(controller, "GET", f"/v1/rollouts/{MODEL}/verdict")
        assert status == 503 and "cannot read the rollout database" in body["error"]
    finally:
        registry.close()


def argo_condition(expression: str, result: dict) -> bool:
    """Argo's expr conditions used in the example are also valid Python over `result`."""
    return bool(eval(expression, {"__builtins__": {}}, {"result": SimpleNamespace(**result)}))


def test_example_manifests_read_the_json_the_judge_serves(setup):
    argo = yaml.safe_load((REPO / "manifests/examples/argo-analysistemplate.yaml").read_text())
    metric = argo["spec"]["metrics"][0]
    args = {a["name"]: a["value"] for a in argo["spec"]["args"]}
    url = metric["provider"]["web"]["url"].replace("{{args.controller}}", args["controller"]) \
        .replace("{{args.model}}", args["model"])
    path = "/" + url.split("/", 3)[3]
    start(setup)
    assert main(["rollout", "run", "--once"]) == 0
    controller, registry = judge(setup)
    try:
        status, doc = handle(controller, "GET", path)
        assert status == 200 and doc["decision"] == "continue"  # no labels yet: neither success nor failure
        assert not argo_condition(metric["successCondition"], doc)
        assert not argo_condition(metric["failureCondition"], doc)
        log_rows(registry.engine, experiment(setup), "champion", requests=2000, labelled=2000, correct=1440)
        log_rows(registry.engine, experiment(setup), "challenger", requests=2000, labelled=2000, correct=1340)
        doc = handle(controller, "GET", path)[1]
        assert argo_condition(metric["failureCondition"], doc) and not argo_condition(metric["successCondition"], doc)

        flagger = yaml.safe_load((REPO / "manifests/examples/flagger-canary.yaml").read_text())
        hooks = {h["type"]: "/" + h["url"].split("/", 3)[3] for h in flagger["spec"]["analysis"]["webhooks"]}
        assert handle(controller, "POST", hooks["confirm-promotion"])[0] == 412
        assert handle(controller, "POST", hooks["rollback"])[0] == 200
    finally:
        registry.close()


def fetch(url: str, post: bool = False) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=b"{}" if post else None, method="POST" if post else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_controller_process_serves_the_judge_and_stops_on_sigterm(setup):
    import os
    import signal
    import subprocess
    import sys

    from tests.serving.support import free_port, wait_for

    start(setup)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ingot.cli.main", "rollout", "run", "--port", str(port), "--host", "127.0.0.1",
         "--interval", "0.2"], env={**os.environ, "INGOT_REGISTRY_URL": setup.url},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def healthy():
            try:
                return fetch(f"http://127.0.0.1:{port}/healthz")[0] == 200
            except OSError:
                return process.poll() is not None
        wait_for(healthy, timeout_s=60, what="the controller process")
        # The child's own loop warms and routes the rollout (the status probe is real: nothing listens,
        # so it stays warming; the judge still answers).
        status, doc = fetch(f"http://127.0.0.1:{port}/v1/rollouts/{MODEL}/verdict")
        assert status == 200 and doc["state"] in ("warming", "pending") and doc["decision"] == "continue"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert b"ingot_rollout_reconcile_errors_total 0.0" in response.read()
        from ingot.registry import Registry
        from ingot.rollout.store import RolloutStore

        with Registry.from_url(setup.url) as registry:
            assert RolloutStore(registry).lease_holder(f"rollout:{MODEL}") is not None  # it holds the model
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output.decode()[-2000:]
        with Registry.from_url(setup.url) as registry:  # a graceful stop hands the lease back at once
            assert RolloutStore(registry).lease_holder(f"rollout:{MODEL}") is None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def judge_process(setup):
    """`ingot rollout run --port` as a process (the judge endpoint with a 1 s socket timeout)."""
    import os
    import subprocess
    import sys

    from tests.serving.support import free_port, wait_for

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ingot.cli.main", "rollout", "run", "--port", str(port), "--interval", "5",
         "--judge-timeout", "1"],
        env={**os.environ, "INGOT_REGISTRY_URL": setup.url}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        assert process.poll() is None
        try:
            return fetch(f"http://127.0.0.1:{port}/healthz")[0] == 200
        except OSError:
            return False

    try:
        wait_for(up, timeout_s=60, interval_s=0.1, what="the judge endpoint")
        yield port
    finally:
        process.terminate()
        process.wait(30)


def _exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[bytes, float]:
    """What the server sends on a fresh connection until it closes it, and how long that took."""
    import socket
    import time

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - started


@pytest.mark.parametrize("length", ["-1", "abc", "2000000", "1e3"])
def test_the_judge_answers_400_to_a_bad_content_length(judge_process, length):
    request = (f"POST /v1/rollouts/{MODEL}/gate/promote HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
               ).encode()
    answer, took = _exchange(judge_process, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400") or head.startswith(b"HTTP/1.1 400"), answer[:200]
    assert "Content-Length" in json.loads(body)["error"] and took < 5


def test_the_judge_closes_idle_connections(judge_process):
    answer, took = _exchange(judge_process, b"")  # connects, sends nothing
    assert answer == b"" and took < 5  # closed by the server after its 1 s timeout
    answer, took = _exchange(judge_process, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    assert took < 5
    assert fetch(f"http://127.0.0.1:{judge_process}/healthz")[0] == 200  # and it still serves


def test_the_judge_binds_loopback_by_default():
    from ingot.cli.main import build_parser

    args = build_parser().parse_args(["rollout", "run"])
    assert args.host == "127.0.0.1"


def test_readmit_puts_a_rejected_version_back_to_candidate(setup, capsys):
    start(setup)
    assert main(["rollout", "readmit", MODEL, "2", "--reason", "x"]) == 1
    assert "is challenger, not rejected" in capsys.readouterr().err
    assert main(["rollout", "rollback", MODEL, "--reason", "forged labels suspected", "--actor", "dana"]) == 0
    with Registry.from_url(setup.url) as registry:
        assert registry.get_version(MODEL, 2).stage is Stage.REJECTED
    capsys.readouterr()
    assert main(["rollout", "readmit", MODEL, "2", "--reason", "the labels were forged", "--actor", "erin"]) == 0
    assert "digits:2 is a candidate again" in capsys.readouterr().out
    with Registry.from_url(setup.url) as registry:
        assert registry.get_version(MODEL, 2).stage is Stage.CANDIDATE
        event = registry.events(MODEL, 2)[-1]
        assert (event.from_stage, event.to_stage, event.actor) == (Stage.REJECTED, Stage.CANDIDATE, "erin")
        assert event.reason == "re-admitted by erin: the labels were forged"
    start(setup)  # testable again
    assert "rollout #2" in capsys.readouterr().out
