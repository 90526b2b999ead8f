"""Rollout figures: evidence needed, false decisions with peeking, reaction and promotion times.

1. Labelled rows (per arm) until the mSPRT rolls back a true 5-point accuracy drop (0.72 -> 0.67),
   looking every --look labels, against the fixed-horizon sample size for 80% power at the same
   alpha (two-sided z-test of two proportions): ratio = sequential median / fixed horizon.
2. False-decision rate with peeking under equal accuracy (look every 100 labels up to 20,000 per
   arm): the mSPRT's wrong rollbacks vs a naive one-sided 5% z-test at every look.
3. Rollback reaction time on one machine: from the reconcile that sees evidence crossing the line
   to the gateway routing file holding weight 0 (SQLite registry + log, local actuator), against a
   reconcile of the same data that decides "continue" (ratio).
4. Promotion under load (unless --no-servers): two in-process model servers, a client loop routing
   by the routing file like the gateway; requests sent, failed, and seconds from the decision to
   the first answer from the new champion version.

    .venv/bin/python benchmarks/bench_rollout.py [--runs 2000] [--seed 1] [--no-servers]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingot.rollout.analysis import Policy, always_valid_halfwidth, difference_variance

POLICY = Policy(alpha=0.05, tau=0.05, min_labels=200, margin=0.01)


def first_rollback(rng, runs: int, p1: float, p2: float, look: int, horizon: int) -> np.ndarray:
    """Per run, labelled rows per arm at the first look whose intersected interval lies below 0 (0: never)."""
    looks = horizon // look
    c1 = rng.binomial(look, p1, size=(runs, looks)).cumsum(axis=1)
    c2 = rng.binomial(look, p2, size=(runs, looks)).cumsum(axis=1)
    n = np.broadcast_to(np.arange(1, looks + 1) * look, c1.shape)
    diff, var = difference_variance(c1, n, c2, n)
    high = np.where(n >= POLICY.min_labels, diff + always_valid_halfwidth(var, POLICY.tau, POLICY.alpha), np.inf)
    crossed = np.minimum.accumulate(high, axis=1) < 0
    return np.where(crossed.any(axis=1), (crossed.argmax(axis=1) + 1) * look, 0), (c1, c2, n)


def fixed_horizon(p1: float, p2: float, alpha: float, power: float) -> int:
    from scipy.stats import norm

    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return int(np.ceil(z * z * (p1 * (1 - p1) + p2 * (1 - p2)) / (p1 - p2) ** 2))


def statistics_section(runs: int, seed: int, look: int) -> None:
    rng = np.random.default_rng(seed)
    decided, _ = first_rollback(rng, runs, 0.72, 0.67, look, 20_000)
    hits = decided[decided > 0]
    fixed = fixed_horizon(0.72, 0.67, POLICY.alpha, 0.80)
    print(f"[1] true 5-point drop, {runs} runs, look every {look} labels per arm")
    print(f"    rolled back: {len(hits) / runs:.1%} of runs; labelled rows per arm to the decision: "
          f"median {np.median(hits):.0f}, p90 {np.percentile(hits, 90):.0f}")
    print(f"    fixed-horizon size for 80% power (alpha {POLICY.alpha}, two-sided): {fixed} per arm")
    print(f"    ratio sequential median / fixed horizon: {np.median(hits) / fixed:.2f}")

    rng = np.random.default_rng(seed + 1)
    decided, (c1, c2, n) = first_rollback(rng, runs, 0.72, 0.72, 100, 20_000)
    diff, var = difference_variance(c1, n, c2, n)
    z = diff / np.sqrt(var)
    naive = ((z < -1.6449) & (n >= POLICY.min_labels)).any(axis=1).mean()
    print(f"[2] equal accuracy, look every 100 labels up to 20,000 per arm, {runs} runs")
    print(f"    wrong rollbacks: mSPRT {np.mean(decided > 0):.2%}, naive 5% z-test at every look {naive:.2%} "
          f"(ratio naive / mSPRT {naive / max(np.mean(decided > 0), 1 / runs):.0f}x)")


def reaction_section(repeats: int) -> None:
    from ingot.rollout import actuators

    real_probe = actuators.version_available
    actuators.version_available = lambda *a, **k: True  # no servers: a rollback is a routing write only
    try:
        decide, look = _reactions(repeats)
    finally:
        actuators.version_available = real_probe
    print(f"[3] rollback reaction on one machine ({repeats} repeats, SQLite, up to 6,000 log rows)")
    print(f"    evidence crosses -> routing file weight 0: median {statistics.median(decide) * 1000:.1f} ms, "
          f"max {max(decide) * 1000:.1f} ms")
    print(f"    a reconcile that decides 'continue': median {statistics.median(look) * 1000:.1f} ms; "
          f"ratio {statistics.median(decide) / statistics.median(look):.2f}")
    print("    (plus the controller's --interval wait before the pass, and the gateway's reload of the file)")


def _reactions(repeats: int) -> tuple[list[float], list[float]]:
    import yaml

    from ingot.registry import Registry
    from ingot.rollout.controller import Controller
    from tests.registry.helpers import publish
    from tests.rollout.support import log_rows

    decide, look = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            registry = Registry.from_url(f"sqlite:///{tmp}/r{i}.db")
            publish(registry, "digits", 1)
            publish(registry, "digits", 2)
            routes = Path(tmp) / f"routes{i}.yaml"
            target = {"actuator": "local", "routes_file": str(routes),
                      "champion": {"rest": "http://127.0.0.1:9", "grpc": "127.0.0.1:9"},
                      "challenger": {"rest": "http://127.0.0.1:9", "grpc": "127.0.0.1:9"}}
            controller = Controller(registry)
            rollout = controller.start("digits", 2, steps=[50], policy=POLICY, target=target)
            rollout = controller.reconcile(rollout.id)
            log_rows(registry.engine, rollout.experiment, "champion", requests=2000, labelled=2000, correct=1440)
            log_rows(registry.engine, rollout.experiment, "challenger", requests=2000, labelled=2000, correct=1400)
            started = time.perf_counter()
            controller.reconcile(rollout.id)  # same counts, decides "continue"
            look.append(time.perf_counter() - started)
            log_rows(registry.engine, rollout.experiment, "challenger", requests=2000, labelled=2000, correct=1240)
            started = time.perf_counter()
            controller.reconcile(rollout.id)
            assert yaml.safe_load(routes.read_text())["weights"]["challenger"] == 0
            decide.append(time.perf_counter() - started)
            registry.close()
    return decide, look


def promotion_section() -> None:
    import random
    from types import SimpleNamespace

    import yaml

    from ingot.rollout.actuators import LocalActuator
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

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for _version, seed in ((1, 0), (2, 7)):
            publish(export(tiny_model(seed=seed, epochs=0), tmp / f"e{seed}", warmup_batch_sizes=(1,)), tmp / "repo")
        base = tmp / "repo" / MODEL
        servers = {}
        for arm, versions in (("champion", [1]), ("challenger", [2])):
            config = tmp / f"{arm}.config"
            config.write_text(model_config_text(MODEL, str(base), versions, versions[0]))
            servers[arm] = start_server(parse_model_server_config(config.read_text()), config_file=config,
                                        config_poll_s=0.1, poll_s=0.1)
        routes = tmp / "routes.yaml"
        target = {"routes_file": str(routes), "drain_s": 1.0, **{
            arm: {"rest": s.rest_url, "grpc": s.grpc_target, "model_config_file": str(tmp / f"{arm}.config"), "base_path": str(base)}
            for arm, s in servers.items()}}
        rollout = SimpleNamespace(model=MODEL, experiment="bench", champion_version=1, challenger_version=2)
        actuator = LocalActuator(target, load_timeout_s=60)
        actuator.set_weight(rollout, 50)
        outcomes: list[tuple[float, str, int, int]] = []
        stop = threading.Event()
        image = colour_images([0])[0].tolist()

        def client() -> None:
            rng = random.Random(0)
            while not stop.is_set():
                table = yaml.safe_load(routes.read_text())
                arm = "challenger" if rng.random() * 100 < table["weights"]["challenger"] else "champion"
                up = table["upstreams"][arm]
                status, _, _ = http("POST", f"{up['rest']}/v1/models/{MODEL}/versions/{up['version']}:predict",
                                    {"instances": [image]})
                outcomes.append((time.perf_counter(), arm, up["version"], status))

        threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(outcomes) > 100, what="warm traffic")
        decided = time.perf_counter()
        actuator.promote(rollout)
        done = time.perf_counter()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for server in servers.values():
            server.stop()
    first_new = min((t for t, arm, v, s in outcomes if arm == "champion" and v == 2 and s == 200), default=None)
    failed = sum(1 for *_, s in outcomes if s != 200)

    print("[4] promotion under load (4 client threads, in-process servers, drain 1 s)")
    print(f"    requests sent {len(outcomes)}, failed {failed}")
    if first_new is not None:
        print(f"    decision -> new champion version serving: {first_new - decided:.2f} s; "
              f"whole promotion incl. drain and unload: {done - decided:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--look", type=int, default=50, help="labels per arm between looks in [1]")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-servers", action="store_true", help="skip [4] (it loads TensorFlow)")
    args = parser.parse_args()
    statistics_section(args.runs, args.seed, args.look)
    reaction_section(args.repeats)
    if not args.no_servers:
        promotion_section()


if __name__ == "__main__":
    main()
