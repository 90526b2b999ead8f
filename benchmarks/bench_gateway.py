"""Gateway benchmark: `ingot gateway` in front of `ingot serve`, against the same server direct.

For each model (the digits CNN at 32x32; MobileNetV2 at 160x160 with --models), in one run, with
16 concurrent single-image clients (the load generator of benchmarks/bench_serving.py):

1. direct: gRPC and REST straight to `ingot serve` (batching on, as bench_serving runs it);
2. through the gateway, inference log ON (the registry's kind of database: a throwaway PostgreSQL
   with its default, durable settings) and OFF (`--no-log`), gRPC and REST;
   efficiency = gateway predictions/s ÷ direct; added latency = gateway p50/p99 − direct p50/p99;
   the gateway's CPU per request; the cost of logging = throughput log on ÷ log off;
3. rows/s the log writer puts into PostgreSQL (batches of 500, `InferenceLogStore.write`);
4. the queue's memory bound: a stalled sink, the queue filled to its bound (20,000 records),
   bytes per queued record (tracemalloc) and what happens beyond it (dropped, counted).

The gateway, the server and the load generator share the machine's cores (2 here); each line
shows the CPU each used. The three configurations run side by side and are measured in
interleaved windows (`--rounds`, default 3); each configuration's best window counts, since the
machine is shared and a noisy neighbour then hurts each alike. All ratios come from one run.

    .venv/bin/python benchmarks/bench_gateway.py [--duration 4] [--rounds 3] [--models cnn,mobilenet_v2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_serving as serving  # the shared model export and load generator

CLIENTS = serving.CLIENTS


def start_gateway(name: str, upstream: serving.Server, workdir: Path, *, log_url: str | None) -> serving.Server:
    """`ingot gateway` in front of `upstream` (champion = version 1, no challenger)."""
    import yaml

    routes = workdir / f"routes-{name}.yaml"
    routes.write_text(yaml.safe_dump({
        "model": name, "experiment": f"bench-{name}",
        "upstreams": {"champion": {"rest": upstream.rest, "grpc": upstream.grpc, "version": 1}},
    }))
    return launch_gateway(routes, workdir, f"{name}-{int(time.time() * 1000)}",
                          ["--log-url", log_url] if log_url else ["--no-log"])


def launch_gateway(routes: Path, workdir: Path, label: str, extra: list[str]) -> serving.Server:
    """`ingot gateway` on free ports over `routes`, once its /readyz answers 200 (within 120 s)."""
    grpc_port, rest_port = serving.free_port(), serving.free_port()
    args = [sys.executable, "-m", "ingot.cli.main", "gateway", "--routes", str(routes), f"--port={grpc_port}",
            f"--rest_api_port={rest_port}", "--log_level=WARNING", *extra]
    log = workdir / f"gateway-{label}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    url = f"http://127.0.0.1:{rest_port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ingot gateway exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return serving.Server(process, url, f"127.0.0.1:{grpc_port}", log)
        except OSError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("ingot gateway did not become ready within 120 s")


def metric(server: serving.Server, name: str) -> float:
    with urllib.request.urlopen(server.rest + "/monitoring/prometheus/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return float("nan")


def line(label: str, load: serving.Load, cpu_label: str = "server") -> str:
    return (f"{label:34s} {load.rate:8.1f} predictions/s  p50 {load.p50_ms:7.2f} ms  p99 {load.p99_ms:7.2f} ms  "
            f"errors {load.errors}  {cpu_label} {load.server_cpu_s / load.seconds:4.2f} cores")


def bench_model(name: str, workdir: Path, seconds: float, rounds: int, log_url: str) -> dict:
    """Direct, gateway with log and gateway without, interleaved for `rounds` rounds (the machine is
    shared: each configuration's best window counts, so a noisy neighbour hurts every one alike)."""
    architecture, size, _ = serving.MODELS[name]
    print(f"\n=== {name}: {architecture} {size[0]}x{size[1]}, {CLIENTS} concurrent single-image clients "
          f"({os.cpu_count()} cores shared by the load generator, the gateway and the server), "
          f"best of {rounds} interleaved windows ===", flush=True)
    base = serving.export_model(name, workdir)
    upstream, _ = serving.start_server(name, base, workdir, batching=True)
    targets: dict[str, serving.Server] = {"direct": upstream}
    row: dict = {}
    try:
        targets["log on"] = start_gateway(name, upstream, workdir, log_url=log_url)
        targets["log off"] = start_gateway(name, upstream, workdir, log_url=None)
        written_before = metric(targets["log on"], "ingot_gateway_log_records_written_total")
        windows: dict[tuple[str, str], list[serving.Load]] = {}
        for _ in range(rounds):
            for kind in ("grpc", "rest"):
                for label, target in targets.items():
                    windows.setdefault((kind, label), []).append(
                        serving.run_load(target, kind, name, size, CLIENTS, seconds))
        time.sleep(1.0)
        row["written"] = metric(targets["log on"], "ingot_gateway_log_records_written_total") - written_before
        row["dropped"] = metric(targets["log on"], "ingot_gateway_log_records_dropped_total")
    finally:
        for target in targets.values():
            target.stop()
    best = {key: max(loads, key=lambda load: load.rate) for key, loads in windows.items()}
    for kind in ("grpc", "rest"):
        for label in targets:
            load = best[(kind, label)]
            who = "server" if label == "direct" else "gateway"
            print(line(f"{kind} {label if label == 'direct' else 'gateway, ' + label}:", load, who)
                  + "  (windows " + ", ".join(f"{w.rate:.0f}" for w in windows[(kind, label)]) + ")")
    for kind in ("grpc", "rest"):
        on, off, d = best[(kind, "log on")], best[(kind, "log off")], best[(kind, "direct")]
        cpu_ms = on.server_cpu_s / max(on.rate * on.seconds, 1) * 1000
        row[kind] = {"efficiency": on.rate / d.rate, "efficiency_off": off.rate / d.rate,
                     "log_cost": 1 - on.rate / off.rate, "p50_added": on.p50_ms - d.p50_ms,
                     "p99_added": on.p99_ms - d.p99_ms, "cpu_ms": cpu_ms}
        r = row[kind]
        print(f"{kind}: gateway efficiency (log on) {r['efficiency']:.2f} x direct (log off {r['efficiency_off']:.2f}); "
              f"added latency p50 {r['p50_added']:+.2f} ms, p99 {r['p99_added']:+.2f} ms; gateway CPU "
              f"{cpu_ms:.2f} ms per request; logging costs {r['log_cost'] * 100:+.1f}% throughput (target <= 5%)")
    print(f"log rows written (warm-up requests included): {row['written']:.0f}, dropped: {row['dropped']:.0f}")
    return row


def log_write_rate(log_url: str, rows: int = 20_000, batch: int = 500) -> float:
    from ingot.inference_log.records import LogRecord
    from ingot.inference_log.store import InferenceLogStore

    now = datetime.now(UTC)
    records = [LogRecord(f"bench-{i // 4}", i % 4, now, "digits", "bench", "champion", "weight", 1, "serving_default",
                         "ab" * 32, 3, "3", 0.9, 120.0, 40.0, 3.5, "OK") for i in range(rows)]
    with InferenceLogStore.from_url(log_url) as store:
        started = time.perf_counter()
        for start in range(0, rows, batch):
            store.write(records[start:start + batch])
        return rows / (time.perf_counter() - started)


def queue_memory_bound(max_queue: int = 20_000) -> tuple[float, float, int]:
    """(MiB held by a full queue, bytes per record, records dropped beyond the bound) with a stalled sink."""
    import threading
    import tracemalloc

    from ingot.inference_log.records import LogRecord
    from ingot.inference_log.sink import QueueSink

    stalled = threading.Event()

    class Stalled:
        def write(self, records):
            stalled.wait()
            return len(records)

    sink = QueueSink(Stalled(), max_queue=max_queue)
    now = datetime.now(UTC)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(max_queue * 2):
        sink.submit([LogRecord(f"{i:032x}", 0, now, "digits", "bench", "champion", "weight", 1, "serving_default",
                               f"{i:064x}", 3, "3", 0.9, 120.0, 40.0, 3.5, "OK")])
    after = tracemalloc.take_snapshot()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    tracemalloc.stop()
    dropped = sink.stats.dropped
    queued = sink.queued + 500  # the stalled writer holds one batch (at most 500) outside the queue
    stalled.set()
    sink.close()
    return held / 2**20, held / max(queued, 1), dropped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured window (default 4)")
    parser.add_argument("--models", default="cnn", help="comma-separated: " + ",".join(serving.MODELS))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved windows per configuration (default 3)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in serving.MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(serving.MODELS)}")
    from tests.support.postgres import throwaway_postgres

    workdir = Path(tempfile.mkdtemp(prefix="ingot-bench-gateway-"))
    try:
        with throwaway_postgres(durable=True) as postgres:
            rows = {name: bench_model(name, workdir, args.duration, args.rounds, postgres.create_database(f"log_{name}"))
                    for name in names}
            rate = log_write_rate(postgres.create_database("log_rate"))
        mib, per_record, dropped = queue_memory_bound()
        print(f"\ninference log into PostgreSQL (durable, batches of 500): {rate:,.0f} rows/s")
        print(f"queue bound with a stalled sink: {mib:.1f} MiB for 20,000 queued records ({per_record:.0f} B each); "
              f"{dropped:,} more records dropped and counted, nothing blocked")
        print("\nsummary (ratios measured in this run):")
        print(f"{'model':14s} {'proto':5s} {'gw/direct':>9s} {'(log off)':>9s} {'log cost':>8s} {'+p50 ms':>8s} "
              f"{'+p99 ms':>8s} {'gw CPU ms/req':>13s}")
        for name, r in rows.items():
            for kind in ("grpc", "rest"):
                k = r[kind]
                print(f"{name:14s} {kind:5s} {k['efficiency']:9.2f} {k['efficiency_off']:9.2f} {k['log_cost'] * 100:7.1f}% "
                      f"{k['p50_added']:8.2f} {k['p99_added']:8.2f} {k['cpu_ms']:13.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
