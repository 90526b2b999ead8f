"""Degraded-answer benchmark: both model servers behind `ingot gateway` killed in the middle of a run.

One run, the digits CNN (32x32) served by two `ingot serve` processes (champion version 1 and
challenger version 2, the same artifact, 50/50), gRPC clients:

1. with a default answer configured (`fallback: [other_arm, default]`, `deadline_ms`): both
   servers are killed (SIGKILL) mid-window; failed requests (target 0), and every answer after
   the kill marked `x-ingot-degraded` (target: all); p50/p99 of degraded answers against the
   p50/p99 of model answers before the kill;
2. without any fallback: the same kill; every request after it fails with UNAVAILABLE (503 over
   REST), the slowest of those failures against `deadline_ms` (target: within it, never a hang).

    .venv/bin/python benchmarks/bench_degrade.py [--duration 4] [--deadline-ms 500]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_cache as cache  # the gateway start, payloads and load driver
import bench_serving as serving

CLIENTS = serving.CLIENTS


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def run(label: str, fallback: dict, name: str, base: Path, workdir: Path, seconds: float) -> cache.Window:
    """Two fresh model servers, a gateway with `fallback`, a window with both servers killed halfway."""
    _, size, _ = serving.MODELS[name]
    second = workdir / f"second-{label}" / name  # the same artifact as version 2, for the challenger
    if not second.exists():
        shutil.copytree(base / "1", second / "2")
    champion, _ = serving.start_server(name, base, workdir, batching=True)
    challenger, _ = serving.start_server(name, second, workdir, batching=True)
    table = {"model": name, "experiment": f"bench-{name}", "weights": {"challenger": 50},
             "upstreams": {"champion": {"rest": champion.rest, "grpc": champion.grpc, "version": 1},
                           "challenger": {"rest": challenger.rest, "grpc": challenger.grpc, "version": 2}},
             **fallback}
    gateway = cache.start_gateway(label, table, workdir)
    try:
        payloads = cache.payloads(name, size, int(seconds * 1500) + 1000, seed=3)

        def kill_both() -> None:
            for server in (champion, challenger):
                server.process.send_signal(signal.SIGKILL)

        return cache.drive(gateway.grpc, [], payloads, 0.0, CLIENTS, seconds, event_at=seconds / 2, event=kill_both)
    finally:
        for server in (gateway, champion, challenger):
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per window (default 4)")
    parser.add_argument("--deadline-ms", type=int, default=500, help="the routing table's deadline_ms (default 500)")
    parser.add_argument("--model", default="cnn", choices=list(serving.MODELS))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    name = args.model
    workdir = Path(tempfile.mkdtemp(prefix="ingot-bench-degrade-"))
    try:
        base = serving.export_model(name, workdir)
        print(f"=== {name} over gRPC, {CLIENTS} concurrent clients, champion (version 1) and challenger (version 2, the same "
              f"artifact) 50/50 on two model servers, both killed {args.duration / 2:g} s into a {args.duration:g} s window; deadline_ms "
              f"{args.deadline_ms} ===", flush=True)
        with_default = run("with-default", {"fallback": ["other_arm", "default"], "default_answer": {"class_id": 0},
                                            "deadline_ms": args.deadline_ms}, name, base, workdir, args.duration)
        w = with_default
        print("\n1. with a default answer (fallback: [other_arm, default]):")
        print(f"   failed requests {w.errors} {w.codes} (target 0); answered {w.answered}; marks {w.marks}")
        print(f"   after the kill: {len(w.after)} answers, {w.undegraded_after} of them not marked degraded (target 0)")
        print(f"   model answers before the kill p50 {pct(w.before, 50):.2f} / p99 {pct(w.before, 99):.2f} ms; "
              f"degraded answers after it p50 {pct(w.after, 50):.2f} / p99 {pct(w.after, 99):.2f} ms "
              f"(p99 ratio {pct(w.after, 99) / pct(w.before, 99):.2f} x)")

        bare = run("no-fallback", {"deadline_ms": args.deadline_ms}, name, base, workdir, args.duration)
        print("\n2. without any fallback (deadline_ms only):")
        print(f"   answered {bare.answered} (before the kill: {len(bare.before)}, after: {len(bare.after)}); failed "
              f"{bare.errors} (after the kill: {bare.errors_after}): {bare.codes}")
        slowest = max(bare.failed, default=float("nan")) * 1000
        print(f"   failures p50 {pct(bare.failed, 50):.2f} / p99 {pct(bare.failed, 99):.2f} ms, slowest {slowest:.1f} ms "
              f"= {slowest / args.deadline_ms:.2f} x deadline_ms (target <= 1: a 503 within the deadline, never a hang)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
