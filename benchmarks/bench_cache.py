"""Prediction-cache benchmark: `ingot gateway` with a Redis cache against the same gateway without.

One run, the digits CNN (32x32; `--model mobilenet_v2` for MobileNetV2 160x160) behind
`ingot serve` (batching on), a throwaway Debian `redis-server` (`allkeys-lru`), gRPC clients:

1. latency of single sequential requests: uncached gateway p50/p99, then cache hits and misses
   through the cached gateway; hit p50 as a ratio of the uncached p50 (target <= 0.3);
2. throughput with 16 concurrent clients at 0%, 50% and 100% hit rates (each request draws a
   hot input, stored beforehand, with the hit-rate probability, else a never-seen one), as a
   ratio of the uncached gateway's throughput measured in the same run (target at 50%: >= 1.6);
   p50/p99 of hits and misses in the 50% window;
3. Redis killed (SIGKILL) in the middle of a 50%-hit window: failed requests (target 0), and the
   p99 of the requests after the kill as a ratio of the uncached p99 (target <= 1.2).

Windows alternate uncached and cached (best of `--rounds`), since the machine is shared.

    .venv/bin/python benchmarks/bench_cache.py [--duration 4] [--rounds 2] [--model cnn]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_serving as serving  # the shared model export, server start and payloads
from bench_gateway import launch_gateway

CLIENTS = serving.CLIENTS
PREDICT = "/tensorflow.serving.PredictionService/Predict"


def start_gateway(label: str, routes_doc: dict, workdir: Path, *, cache_url: str | None = None) -> serving.Server:
    """`ingot gateway` with this routing table (no inference log: the cache is what is measured)."""
    import yaml

    routes = workdir / f"routes-{label}.yaml"
    routes.write_text(yaml.safe_dump(routes_doc))
    return launch_gateway(routes, workdir, label, ["--no-log", *(["--cache-url", cache_url] if cache_url else [])])


def payloads(name: str, size: tuple[int, int], count: int, seed: int) -> list[bytes]:
    """`count` distinct single-image PredictRequests (each a distinct input: a distinct cache key)."""
    from tensorflow_serving.apis import predict_pb2

    from ingot.protocol.tensors import array_to_proto

    rng = np.random.default_rng(seed)
    found = []
    for _ in range(count):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        array_to_proto(rng.integers(0, 256, (1, *size, 3), dtype=np.uint8), request.inputs["images"])
        found.append(request.SerializeToString())
    return found


@dataclass
class Window:
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"hit": [], "miss": []})
    before: list[float] = field(default_factory=list)  # latencies of answers to requests sent before `event_at`
    after: list[float] = field(default_factory=list)  # latencies of answers to requests sent after `event_at`
    failed: list[float] = field(default_factory=list)  # latencies of failed requests
    undegraded_after: int = 0  # answers after `event_at` without x-ingot-degraded
    codes: dict[str, int] = field(default_factory=dict)  # gRPC status names of failed requests
    errors: int = 0
    errors_after: int = 0
    answered: int = 0
    marks: dict[str, int] = field(default_factory=dict)  # x-ingot-* values seen (cache / degraded)

    @property
    def rate(self) -> float:
        return self.answered / self.seconds

    def pct(self, kind: str, q: float) -> float:
        values = self.latencies[kind] if kind in self.latencies else self.after
        return float(np.percentile(values, q)) * 1000 if values else float("nan")

    def all_pct(self, q: float) -> float:
        values = self.latencies["hit"] + self.latencies["miss"]
        return float(np.percentile(values, q)) * 1000 if values else float("nan")


def drive(target: str, hot: list[bytes], fresh: list[bytes], hit_rate: float, concurrency: int, seconds: float,
          *, event_at: float | None = None, event: Any = None, timeout_s: float = 30.0, seed: int = 0) -> Window:
    """`concurrency` gRPC clients for `seconds` (after 0.3 s of warm-up); each request is a hot
    input with probability `hit_rate`, else the next never-seen one. `event` runs (in a thread)
    `event_at` seconds into the window; `after` holds the latencies of requests sent past it."""
    import grpc

    window = Window(seconds)
    rng = random.Random(seed)
    cursor = iter(fresh)

    async def main() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)
            start = time.perf_counter()
            measure_from = start + 0.3
            stop_at = measure_from + seconds
            fired = event_at is None
            event_time = measure_from + (event_at or 0.0)

            async def worker() -> None:
                nonlocal fired
                while True:
                    t0 = time.perf_counter()
                    if t0 >= stop_at:
                        return
                    if not fired and t0 >= event_time:
                        fired = True
                        threading.Thread(target=event, daemon=True).start()
                    is_hot = rng.random() < hit_rate
                    payload = rng.choice(hot) if is_hot else next(cursor)
                    rpc = call(payload, timeout=timeout_s)
                    try:
                        await rpc
                        metadata = dict(await rpc.initial_metadata() or ())
                        ok, code = True, ""
                    except grpc.aio.AioRpcError as err:
                        metadata = dict(err.initial_metadata() or ())
                        ok, code = False, err.code().name
                    t1 = time.perf_counter()
                    if t0 < measure_from:
                        continue
                    for key in ("x-ingot-cache", "x-ingot-degraded"):
                        if key in metadata:
                            mark = f"{key.removeprefix('x-ingot-')}={metadata[key]}"
                            window.marks[mark] = window.marks.get(mark, 0) + 1
                    late = event_at is not None and t0 >= event_time
                    if ok:
                        window.answered += 1
                        kind = "hit" if metadata.get("x-ingot-cache") == "hit" else "miss"
                        window.latencies[kind].append(t1 - t0)
                        (window.after if late else window.before).append(t1 - t0)
                        window.undegraded_after += late and "x-ingot-degraded" not in metadata
                    else:
                        window.failed.append(t1 - t0)
                        window.codes[code] = window.codes.get(code, 0) + 1
                        window.errors += 1
                        window.errors_after += late

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(main())
    return window


def warm(target: str, hot: list[bytes]) -> None:
    """Send each hot input once, then wait for the stores (off the request path) to land."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)
        missing = list(hot)
        deadline = time.monotonic() + 30
        while missing:  # a miss stores the answer (off the request path); ask until every one hits
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(missing)} hot inputs never cached: is redis-server reachable?")
            missing = [p for p in missing
                       if dict(call.with_call(p, timeout=30)[1].initial_metadata()).get("x-ingot-cache") != "hit"]


def metric(server: serving.Server, name: str) -> float:
    with urllib.request.urlopen(server.rest + "/monitoring/prometheus/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured window (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating windows per configuration (default 2)")
    parser.add_argument("--model", default="cnn", choices=list(serving.MODELS))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tests.support.redis import redis_server

    name = args.model
    architecture, size, _ = serving.MODELS[name]
    workdir = Path(tempfile.mkdtemp(prefix="ingot-bench-cache-"))
    print(f"=== {name}: {architecture} {size[0]}x{size[1]} over gRPC; {os.cpu_count()} cores shared by the load "
          f"generator, the gateways, the model server and redis-server ===", flush=True)
    servers: list[serving.Server] = []
    try:
        base = serving.export_model(name, workdir)
        upstream, _ = serving.start_server(name, base, workdir, batching=True)
        servers.append(upstream)
        table = {"model": name, "experiment": f"bench-{name}",
                 "upstreams": {"champion": {"rest": upstream.rest, "grpc": upstream.grpc, "version": 1}}}
        with redis_server(["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"]) as redis:
            plain = start_gateway("uncached", table, workdir)
            servers.append(plain)
            cached = start_gateway("cached", {**table, "cache": {"ttl_s": 3600}}, workdir, cache_url=redis.url)
            servers.append(cached)
            hot = payloads(name, size, 64, seed=1)
            budget = int(args.duration * (1500 if name == "cnn" else 150)) + 500  # more than a window sends
            fresh = iter(range(1_000_000))

            def unseen() -> list[bytes]:
                return payloads(name, size, budget, seed=1000 + next(fresh))

            warm(cached.grpc, hot)  # the hot inputs go into the cache

            # 1. sequential latency
            seq_seconds = max(2.0, args.duration / 2)
            uncached_seq = drive(plain.grpc, hot, unseen(), 0.0, 1, seq_seconds)
            hits_seq = drive(cached.grpc, hot, [], 1.0, 1, seq_seconds)
            miss_seq = drive(cached.grpc, hot, unseen(), 0.0, 1, seq_seconds)
            print("\n1. single sequential requests:")
            print(f"   uncached gateway  p50 {uncached_seq.all_pct(50):6.2f} ms  p99 {uncached_seq.all_pct(99):6.2f} ms")
            print(f"   cache hit         p50 {hits_seq.pct('hit', 50):6.2f} ms  p99 {hits_seq.pct('hit', 99):6.2f} ms  "
                  f"({hits_seq.marks})")
            print(f"   cache miss        p50 {miss_seq.pct('miss', 50):6.2f} ms  p99 {miss_seq.pct('miss', 99):6.2f} ms")
            hit_ratio = hits_seq.pct("hit", 50) / uncached_seq.all_pct(50)
            miss_ratio = miss_seq.pct("miss", 50) / uncached_seq.all_pct(50)
            print(f"   hit p50 / uncached p50 = {hit_ratio:.2f} (target <= 0.3); miss p50 / uncached p50 = "
                  f"{miss_ratio:.2f}")

            # 2. throughput by hit rate, alternating with the uncached baseline
            windows: dict[str, list[Window]] = {}
            for _ in range(args.rounds):
                windows.setdefault("uncached", []).append(drive(plain.grpc, hot, unseen(), 0.0, CLIENTS, args.duration))
                for rate in (0.0, 0.5, 1.0):
                    windows.setdefault(f"{rate:.0%}", []).append(
                        drive(cached.grpc, hot, unseen(), rate, CLIENTS, args.duration, seed=int(rate * 10)))
            best = {key: max(ws, key=lambda w: w.rate) for key, ws in windows.items()}
            base_rate = best["uncached"].rate
            print(f"\n2. {CLIENTS} concurrent clients, best of {args.rounds} alternating windows of {args.duration:g} s:")
            print(f"   uncached gateway  {base_rate:8.1f} predictions/s  p50 {best['uncached'].all_pct(50):6.2f} ms  "
                  f"p99 {best['uncached'].all_pct(99):6.2f} ms  errors {best['uncached'].errors}")
            for key in ("0%", "50%", "100%"):
                w = best[key]
                print(f"   hit rate {key:>4s}     {w.rate:8.1f} predictions/s  = {w.rate / base_rate:4.2f} x uncached  "
                      f"p50 {w.all_pct(50):6.2f} ms  p99 {w.all_pct(99):6.2f} ms  errors {w.errors}  {w.marks}")
            half = best["50%"]
            print(f"   at 50%: hits p50 {half.pct('hit', 50):.2f} / p99 {half.pct('hit', 99):.2f} ms, misses p50 "
                  f"{half.pct('miss', 50):.2f} / p99 {half.pct('miss', 99):.2f} ms; throughput "
                  f"{half.rate / base_rate:.2f} x uncached (target >= 1.6)")

            # 3. Redis killed mid-window
            baseline = drive(plain.grpc, hot, unseen(), 0.0, CLIENTS, args.duration)
            errors_before = metric(cached, "ingot_gateway_cache_errors_total")
            killed = drive(cached.grpc, hot, unseen(), 0.5, CLIENTS, args.duration, event_at=args.duration / 2,
                           event=redis.kill, seed=7)
            errors_after = metric(cached, "ingot_gateway_cache_errors_total")
            skipped = metric(cached, "ingot_gateway_cache_skipped_total")
            after_p99 = float(np.percentile(killed.after, 99)) * 1000 if killed.after else float("nan")
            print(f"\n3. redis-server killed {args.duration / 2:g} s into a 50%-hit window ({CLIENTS} clients):")
            print(f"   failed requests {killed.errors} (target 0); answered {killed.answered}; {killed.marks}")
            print(f"   after the kill: p99 {after_p99:.2f} ms vs uncached p99 {baseline.all_pct(99):.2f} ms = "
                  f"{after_p99 / baseline.all_pct(99):.2f} x (target <= 1.2); cache errors counted "
                  f"{errors_after - errors_before:.0f}, calls skipped by the open breaker {skipped:.0f}")
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
