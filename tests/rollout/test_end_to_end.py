"""One machine, end to end: two `ingot serve` processes, the real `ingot gateway` process, and the
controller. Labelled traffic through the gateway: an untrained challenger is rolled back, a
trained one promoted (with traffic running through the promotion and no request failing), each
recorded in the registry with its figures."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from ingot.client import Client
from ingot.client.feedback import FeedbackRejected
from ingot.registry import Registry, Stage
from ingot.rollout.actuators import LocalActuator
from ingot.rollout.analysis import Policy
from ingot.rollout.controller import Controller
from ingot.rollout.routing import model_config_text
from tests.registry.helpers import publish as register
from tests.serving.support import (
    CLASSES,
    MODEL,
    colour_images,
    export,
    free_port,
    publish,
    tiny_model,
    wait_for,
)

pytestmark = pytest.mark.xdist_group("rollout-servers")
POLICY = Policy(min_labels=40, margin=0.10, min_step_requests=10, srm_min_requests=8)


def start(args: list[str], ready_url: str, log: Path) -> subprocess.Popen:
    out = log.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "ingot.cli.main", *args], stdout=out, stderr=subprocess.STDOUT,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{args[0]} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for(ready, timeout_s=180, interval_s=0.2, what=f"{args[0]} process")
    return process


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    repo = root / "repo"
    # v1 and v3 learn the colours; v2 is untrained (about one in three right).
    for version, (seed, epochs) in ((1, (0, 3)), (2, (7, 0)), (3, (2, 3))):
        assert publish(export(tiny_model(seed=seed, epochs=epochs), root / f"e{version}", warmup_batch_sizes=(1,)),
                       repo) == version
    base = repo / MODEL
    url = f"sqlite:///{root / 'registry.db'}"
    with Registry.from_url(url) as registry:
        for version in (1, 2, 3):
            register(registry, MODEL, version)
    processes, ends = [], {}
    try:
        for arm, version in (("champion", 1), ("challenger", 2)):
            config = root / f"{arm}.config"
            config.write_text(model_config_text(MODEL, str(base), [version], version))
            rest, grpc = free_port(), free_port()
            processes.append(start(["serve", "--model_config_file", str(config), "--model_config_file_poll_wait_seconds",
                                    "0.2", "--file_system_poll_wait_seconds", "0.2", "--port", str(grpc),
                                    "--rest_api_port", str(rest)], f"http://127.0.0.1:{rest}/readyz", root / f"{arm}.log"))
            ends[arm] = {"rest": f"http://127.0.0.1:{rest}", "grpc": f"127.0.0.1:{grpc}",
                         "model_config_file": str(config), "base_path": str(base)}
        routes = root / "routes.yaml"
        target = {"actuator": "local", "routes_file": str(routes), "drain_s": 1.0, **ends}
        # The gateway needs a table to start: the champion alone, as before any rollout.
        routes.write_text(yaml.safe_dump({"model": MODEL, "upstreams": {"champion": {
            "rest": ends["champion"]["rest"], "grpc": ends["champion"]["grpc"], "version": 1}}}))
        gateway_rest, gateway_grpc = free_port(), free_port()
        processes.append(start(["gateway", "--routes", str(routes), "--port", str(gateway_grpc), "--rest_api_port",
                                str(gateway_rest), "--log-url", url, "--routes-poll-seconds", "0.1",
                                "--model_repository", str(repo),
                                "--log_level", "WARNING"], f"http://127.0.0.1:{gateway_rest}/readyz", root / "gateway.log"))
        yield {"url": url, "target": target, "routes": routes, "gateway": f"http://127.0.0.1:{gateway_rest}"}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Traffic:
    """Labelled requests through the gateway: each image's true colour is sent back as feedback."""

    def __init__(self, gateway: str) -> None:
        self.client = Client.connect(gateway, timeout_s=30)
        self.gateway = gateway
        self.statuses: list[str] = []
        self.rng = random.Random(5)

    def send(self, count: int) -> None:
        for _ in range(count):
            label = self.rng.randrange(len(CLASSES))
            image = colour_images([label], seed=self.rng.randrange(1 << 30))[0]
            try:
                prediction = self.client.classify([image], model=MODEL)[0]
            except Exception as err:  # noqa: BLE001 - a failed request is what the test counts
                self.statuses.append(type(err).__name__)
                continue
            self.statuses.append("OK")
            deadline = time.monotonic() + 10
            while True:  # the log row is written off the request path; a label may arrive first
                try:
                    self.client.feedback(prediction, CLASSES[label], gateway_url=self.gateway)  # with its key
                    break
                except FeedbackRejected:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


def drive(controller: Controller, rollout_id: int, traffic: Traffic, *, until: set[str], batches: int = 40) -> str:
    state = controller.reconcile(rollout_id).state
    for _ in range(batches):
        if state in until:
            return state
        traffic.send(20)
        state = controller.reconcile(rollout_id).state
    return state


def test_worse_challenger_rolled_back_then_equal_one_promoted_under_traffic(machine):
    with Registry.from_url(machine["url"]) as registry:
        controller = Controller(registry, actuator_factory=lambda target: LocalActuator(target, load_timeout_s=120),
                                warmup_timeout_s=120)
        traffic = Traffic(machine["gateway"])

        worse = controller.start(MODEL, 2, steps=[50], policy=POLICY, target=machine["target"], actor="e2e")
        wait_for(lambda: controller.reconcile(worse.id).state == "analyzing", timeout_s=60, what="challenger warm")
        assert drive(controller, worse.id, traffic, until={"rolled_back"}) == "rolled_back"
        assert yaml.safe_load(machine["routes"].read_text())["weights"] == {"challenger": 0}
        assert registry.get_version(MODEL, 2).stage is Stage.REJECTED
        assert "correct" in registry.events(MODEL, 2)[-1].reason
        history = controller.store.get(worse.id).transitions
        evidence = next(t for t in history if t.to_state == "rolling_back").evidence
        assert evidence["counts"]["challenger"]["accuracy"] < evidence["counts"]["champion"]["accuracy"]

        better = controller.start(MODEL, 3, steps=[50], policy=POLICY, target=machine["target"], actor="e2e")
        wait_for(lambda: controller.reconcile(better.id).state == "analyzing", timeout_s=120, what="v3 warm")
        background = Traffic(machine["gateway"])
        stop = threading.Event()

        def keep_sending() -> None:
            while not stop.is_set():
                background.send(1)

        thread = threading.Thread(target=keep_sending, daemon=True)
        thread.start()
        try:
            outcome = drive(controller, better.id, traffic, until={"promoted", "rolled_back"})
            assert outcome == "promoted", [(t.to_state, t.reason) for t in controller.store.get(better.id).transitions]
            background_before = len(background.statuses)
            wait_for(lambda: len(background.statuses) > background_before + 10, what="traffic after the promotion")
        finally:
            stop.set()
            thread.join(timeout=60)
        assert set(traffic.statuses) == {"OK"} and set(background.statuses) == {"OK"}  # no request failed
        table = yaml.safe_load(machine["routes"].read_text())
        assert table["upstreams"]["champion"]["version"] == 3 and "challenger" not in table["upstreams"]
        assert registry.champion(MODEL).version == 3
        assert registry.get_version(MODEL, 1).stage is Stage.ARCHIVED
        served = traffic.client.classify([colour_images([0])[0]], model=MODEL)[0]
        assert (served.variant, served.model_version) == ("champion", 3)
