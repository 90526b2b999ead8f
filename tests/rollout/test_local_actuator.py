"""The local actuator against two real in-process model servers (champion and challenger) that
poll their --model_config_file: prepare, weights, and a promotion under traffic with no failed
request. The traffic loop routes the way the gateway does, re-reading the routing file."""

from __future__ import annotations

import random
import threading
from types import SimpleNamespace

import pytest
import yaml

from ingot.rollout.actuators import LocalActuator, version_available
from ingot.rollout.routing import model_config_text
from ingot.serving.config import parse_model_server_config
from tests.serving.support import (
    MODEL,
    colour_images,
    export,
    http,
    publish,
    start_server,
    tiny_model,
    wait_for,
)

pytestmark = pytest.mark.xdist_group("rollout-servers")


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout-repo")
    base = root / "repo"
    for version, seed in ((1, 0), (2, 7)):
        exported = export(tiny_model(seed=seed, epochs=0), root / f"export-{seed}", warmup_batch_sizes=(1,))
        assert publish(exported, base) == version
    return base / MODEL


def serve(config_file, base, versions):
    config_file.write_text(model_config_text(MODEL, str(base), versions, versions[0]))
    return start_server(parse_model_server_config(config_file.read_text()), config_file=config_file,
                        config_poll_s=0.1, poll_s=0.1)


def test_prepare_weights_and_a_promotion_under_traffic(repository, tmp_path):
    champion = serve(tmp_path / "champion.config", repository, [1])
    challenger = serve(tmp_path / "challenger.config", repository, [1])
    try:
        routes = tmp_path / "routes.yaml"
        target = {
            "actuator": "local", "routes_file": str(routes), "drain_s": 0.5,
            "champion": {"rest": champion.rest_url, "grpc": champion.grpc_target,
                         "model_config_file": str(tmp_path / "champion.config"), "base_path": str(repository)},
            "challenger": {"rest": challenger.rest_url, "grpc": challenger.grpc_target,
                           "model_config_file": str(tmp_path / "challenger.config"), "base_path": str(repository)},
        }
        rollout = SimpleNamespace(model=MODEL, experiment="colours-v2-vs-v1-test", champion_version=1,
                                  challenger_version=2)
        actuator = LocalActuator(target, load_timeout_s=60)
        actuator.prepare(rollout)
        table = yaml.safe_load(routes.read_text())
        assert table["weights"] == {"challenger": 0} and table["experiment"] == rollout.experiment
        assert table["upstreams"]["champion"]["version"] == 1
        wait_for(lambda: actuator.available(rollout, "challenger", 2), what="challenger loads v2")
        actuator.set_weight(rollout, 50)
        assert yaml.safe_load(routes.read_text())["weights"] == {"challenger": 50}

        outcomes: list[tuple[str, int, int]] = []
        stop = threading.Event()
        image = colour_images([0])[0].tolist()

        def traffic() -> None:
            rng = random.Random(1)
            while not stop.is_set():
                current = yaml.safe_load(routes.read_text())
                arm = "challenger" if rng.random() * 100 < current["weights"]["challenger"] else "champion"
                upstream = current["upstreams"][arm]
                status, _, _ = http("POST", f"{upstream['rest']}/v1/models/{MODEL}/versions/{upstream['version']}"
                                    ":predict", {"instances": [image]})
                outcomes.append((arm, upstream["version"], status))

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        wait_for(lambda: len(outcomes) > 20, what="traffic before the promotion")
        actuator.promote(rollout)
        wait_for(lambda: not version_available(champion.rest_url, MODEL, 1), what="old version unloads")
        after = len(outcomes)
        wait_for(lambda: len(outcomes) > after + 20, what="traffic after the promotion")
        stop.set()
        thread.join(timeout=30)

        assert [o for o in outcomes if o[2] != 200] == []  # no request failed
        assert ("champion", 2, 200) in outcomes and ("champion", 1, 200) in outcomes
        final = yaml.safe_load(routes.read_text())
        assert final["weights"] == {"challenger": 0}
        assert final["upstreams"]["champion"]["version"] == 2
        assert "challenger" not in final["upstreams"]  # the gateway refuses two arms on one version
        config = parse_model_server_config((tmp_path / "champion.config").read_text())
        entry = config.model_config_list.config[0]
        assert list(entry.model_version_policy.specific.versions) == [2]
        assert dict(entry.version_labels) == {"stable": 2}
    finally:
        champion.stop()
        challenger.stop()


def test_rollback_is_one_routing_write(tmp_path):
    routes = tmp_path / "routes.yaml"
    target = {"routes_file": str(routes), "champion": {"rest": "http://127.0.0.1:1", "grpc": "127.0.0.1:1"},
              "challenger": {"rest": "http://127.0.0.1:2", "grpc": "127.0.0.1:2"}}
    rollout = SimpleNamespace(model=MODEL, experiment="e-1", champion_version=1, challenger_version=2)
    actuator = LocalActuator(target)
    actuator.set_weight(rollout, 50)
    before = routes.stat().st_ino
    actuator.set_weight(rollout, 0)
    assert yaml.safe_load(routes.read_text())["weights"] == {"challenger": 0}
    assert routes.stat().st_ino != before  # replaced whole by rename, never edited in place
    assert list(tmp_path.iterdir()) == [routes]  # no temporary file left behind
    assert not actuator.available(rollout, "challenger", 2)  # a dead server is simply not available


def test_a_resumed_promotion_never_moves_the_label_back(tmp_path, monkeypatch):
    """Killed after the label moved to v2 (routes still pinned to v1): the rerun goes forward only."""
    base = tmp_path / "repo" / MODEL
    routes, champion_config = tmp_path / "routes.yaml", tmp_path / "champion.config"
    target = {"routes_file": str(routes), "drain_s": 0,
              "champion": {"rest": "http://127.0.0.1:1", "grpc": "127.0.0.1:1",
                           "model_config_file": str(champion_config), "base_path": str(base)},
              "challenger": {"rest": "http://127.0.0.1:2", "grpc": "127.0.0.1:2"}}
    rollout = SimpleNamespace(model=MODEL, experiment="e-1", champion_version=1, challenger_version=2)
    actuator = LocalActuator(target)
    actuator.set_weight(rollout, 50)
    champion_config.write_text(model_config_text(MODEL, str(base), [1, 2], 2))
    writes: list[tuple[list[int], int]] = []
    real = actuator._write_model_config
    monkeypatch.setattr(actuator, "_write_model_config",
                        lambda r, arm, versions, stable: (writes.append((versions, stable)), real(r, arm, versions, stable)))
    monkeypatch.setattr(actuator, "available", lambda r, arm, version: True)
    actuator.promote(rollout)
    assert writes == [([1, 2], 2), ([2], 2)]
    table = yaml.safe_load(routes.read_text())
    assert table["upstreams"]["champion"]["version"] == 2 and table["weights"] == {"challenger": 0}
