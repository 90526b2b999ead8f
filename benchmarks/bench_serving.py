"""Serving benchmark: Ingot's model server against the same SavedModel run in-process.

For each model (the default digits CNN at 32x32, and MobileNetV2 at 160x160 as in the flowers
recipe; both untrained: throughput does not depend on the weights), in one run:

1. baseline: in-process predictions/s of the exported SavedModel (tf.saved_model.load, the
   serving_default signature at batch 32, uint8 input), no server, in its best configuration
   (one caller or two concurrent callers, whichever is faster); the best of three windows
   spread over the run, since the machine is shared;
   ceiling: a Python grpc.aio server that answers a canned response, under the same load, the
   most any Python gRPC server can do here (the limit for fast models);
2. cold start: `ingot serve` as a subprocess, from process start to the first successful predict;
3. gRPC efficiency: 16 concurrent single-image clients, batching on → predictions/s ÷ baseline;
4. REST efficiency: the same with uint8 `instances` JSON → ÷ baseline;
5. batching gain: gRPC at 16 clients with batching off (a second server) → throughput ratio on/off
   and the p99 latencies;
6. warm start: the first request after a new version becomes AVAILABLE vs the steady-state p50,
   with warm-up (the default) and with `--enable_model_warmup=false`;
7. peak resident memory (VmHWM) of each server process after its load phases.

The load generator is one asyncio process (this one): grpc.aio with pre-serialized requests and
undecoded responses, aiohttp for REST with pre-encoded bodies, so the client costs as little as
Python allows. It shares the machine's cores with the server (2 here) and its CPU time is printed
next to the server's. Everything listens on 127.0.0.1 and every window is bounded in time.

    .venv/bin/python benchmarks/bench_serving.py [--duration 4] [--models cnn,mobilenet_v2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIENTS = 16
BATCH = 32
MODELS = {
    # name: (architecture, image size, classes)
    "cnn": ("cnn", (32, 32), 10),
    "mobilenet_v2": ("mobilenet_v2", (160, 160), 5),
}
# batch_timeout_micros: with a zero timeout the batch thread takes whatever has arrived the moment
# it is free (about 6 requests of the 16 for the CNN, since the rest are still in the gRPC stack);
# waiting up to 2 ms lets more join, and on 2 cores the bigger batches raised gRPC and REST
# throughput by a few percent and lowered p99 in interleaved A/B runs (0 vs 2000, 3 pairs each).
# MobileNetV2's batches take 60-120 ms, so the wait never applies there.
# num_batch_threads per model, as TF Serving's tuning guide has it (measured here, A/B pairs):
# the CNN's batches are short and a second batch thread only adds GIL and core contention
# (gRPC ~15% slower); MobileNetV2's 16 clients settle into two alternating groups of ~8, and a
# second thread lets both run at once (gRPC +6-12%, REST +6%).
BATCHING = """
max_batch_size {{ value: 32 }}
batch_timeout_micros {{ value: 2000 }}
max_enqueued_batches {{ value: 64 }}
num_batch_threads {{ value: {threads} }}
"""
BATCH_THREADS = {"cnn": 1, "mobilenet_v2": 2}
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


# --------------------------------------------------------------------------- model preparation


def export_model(name: str, workdir: Path) -> Path:
    """Build, export (ingot.export) and publish (ingot.export.publishing.publish) one model; returns its base path."""
    import keras

    from ingot.export.publishing import publish
    from ingot.export.saved_model import export_saved_model
    from ingot.models.builders import build_model

    architecture, size, classes = MODELS[name]
    keras.utils.set_random_seed(0)
    options = {"weights": None} if architecture != "cnn" else {}
    model = build_model(architecture, num_classes=classes, image_size=size, **options)
    class_names = [f"class_{i}" for i in range(classes)]
    card = {
        "name": name, "architecture": architecture, "training_config": {"benchmark": True},
        "data_hash": "sha256:" + "00" * 32,
        "metrics": {"accuracy": 0.0, "per_class": {c: {"f1": 0.0} for c in class_names}},
        "drift_baseline": {},
    }
    artifact = export_saved_model(model, workdir / "exports" / name, class_names=class_names,
                                  image_size=size, model_card=card)
    published = publish(artifact, workdir / "repo", name)
    return Path(published.path).parent


BASELINE_CALLERS = (1, 2)  # concurrent in-process callers tried for the baseline


class Baseline:
    """In-process predictions/s of the SavedModel at batch 32 (the server's max batch), in its
    best configuration: one caller, and two callers at once (TensorFlow releases the GIL inside
    its ops, so on 2 cores two calls overlap, as the server's two batch threads do). Whichever is
    faster in a window is that window's figure; without the two-caller case the server beat
    "in-process" and the ratios overstated its efficiency.

    The machine is shared, so it is measured in several windows spread over the run (before,
    between and after the servers) and the best window is the denominator: ratios err low."""

    def __init__(self, version_dir: Path, size: tuple[int, int]) -> None:
        import tensorflow as tf

        self._fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
        self._batch = tf.constant(np.random.default_rng(0).integers(0, 256, (BATCH, *size, 3), dtype=np.uint8))
        for _ in range(3):
            self._fn(images=self._batch)["probabilities"].numpy()
        self.windows: list[float] = []
        self.by_callers: dict[int, list[float]] = {n: [] for n in BASELINE_CALLERS}

    def _rate(self, callers: int, seconds: float) -> float:
        import threading

        counts = [0] * callers
        deadline = time.perf_counter() + seconds

        def loop(index: int) -> None:
            while time.perf_counter() < deadline:
                self._fn(images=self._batch)["probabilities"].numpy()
                counts[index] += BATCH

        started = time.perf_counter()
        threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts) / (time.perf_counter() - started)

    def measure(self, seconds: float) -> float:
        rates = {n: self._rate(n, seconds / len(BASELINE_CALLERS)) for n in BASELINE_CALLERS}
        for n, rate in rates.items():
            self.by_callers[n].append(rate)
        self.windows.append(max(rates.values()))
        return self.windows[-1]

    @property
    def best(self) -> float:
        return max(self.windows)

    def describe(self) -> str:
        return ", ".join(f"{n} caller{'s' if n > 1 else ''}: best {max(r):.0f}" for n, r in self.by_callers.items())


# --------------------------------------------------------------------------- server process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    rest: str
    grpc: str
    log: Path

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_server(name: str, base: Path, workdir: Path, *, batching: bool, warmup: bool = True) -> tuple[Server, float]:
    """Start `ingot serve`; returns the server and the cold start (process start → first 200)."""
    grpc_port, rest_port = free_port(), free_port()
    args = [sys.executable, "-m", "ingot.cli.main", "serve", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
            f"--model_name={name}", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0.2",
            f"--enable_model_warmup={'true' if warmup else 'false'}", "--log_level=WARNING"]
    if batching:
        params = workdir / "batching.config"
        params.write_text(BATCHING.format(threads=BATCH_THREADS[name]))
        args += ["--enable_batching=true", f"--batching_parameters_file={params}"]
    log = workdir / f"serve-{name}-{int(time.time() * 1000)}.log"
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    url = f"http://127.0.0.1:{rest_port}"
    wait_for_first_answer(process, url, name, log, started + 120)
    cold = time.perf_counter() - started
    return Server(process, url, f"127.0.0.1:{grpc_port}", log), cold


def wait_for_first_answer(process: subprocess.Popen, url: str, name: str, log: Path, deadline: float) -> None:
    """Until `ingot serve` at `url` answers a one-image predict with 200 (the end of a cold start);
    kills it and raises when it exits first or `deadline` (perf_counter) passes."""
    import urllib.error
    import urllib.request

    _, size, _ = MODELS[name]
    body = json.dumps({"instances": np.zeros((1, *size, 3), np.uint8).tolist()}).encode()
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ingot serve exited early:\n{log.read_text()[-3000:]}")
        try:
            request = urllib.request.Request(f"{url}/v1/models/{name}:predict", data=body, method="POST")
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.02)
    process.kill()
    raise RuntimeError("ingot serve did not answer before its deadline")


# --------------------------------------------------------------------------- load generation


@dataclass
class Load:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cpu_s: float
    server_cpu_s: float
    seconds: float


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


async def _drive(send, concurrency: int, seconds: float, warmup_s: float = 0.5) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup_s
    stop_at = measure_from + seconds

    async def worker() -> None:
        nonlocal errors
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            ok = await send()
            t1 = time.perf_counter()
            if t0 >= measure_from:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, seconds


def grpc_payload(name: str, size: tuple[int, int], version: int | None = None) -> bytes:
    from tensorflow_serving.apis import predict_pb2

    from ingot.protocol.tensors import array_to_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    image = np.random.default_rng(1).integers(0, 256, (1, *size, 3), dtype=np.uint8)
    array_to_proto(image, request.inputs["images"])
    return request.SerializeToString()


def run_load(server: Server, kind: str, name: str, size: tuple[int, int], concurrency: int, seconds: float) -> Load:
    async def main() -> tuple[list[float], int, float]:
        if kind == "grpc":
            import grpc

            payload = grpc_payload(name, size)
            async with grpc.aio.insecure_channel(server.grpc, options=[
                ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]) as channel:
                call = channel.unary_unary(PREDICT_METHOD, request_serializer=None, response_deserializer=None)

                async def send() -> bool:
                    try:
                        await call(payload, timeout=30)
                        return True
                    except grpc.aio.AioRpcError:
                        return False

                return await _drive(send, concurrency, seconds)
        import aiohttp

        image = np.random.default_rng(1).integers(0, 256, (1, *size, 3), dtype=np.uint8)
        body = json.dumps({"instances": image.tolist()}).encode()
        url = f"{server.rest}/v1/models/{name}:predict"
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            async def send() -> bool:
                try:
                    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        return r.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    return False

            return await _drive(send, concurrency, seconds)

    client0 = resource.getrusage(resource.RUSAGE_SELF)
    server0 = server.cpu_seconds()
    latencies, errors, window = asyncio.run(main())
    client1 = resource.getrusage(resource.RUSAGE_SELF)
    return Load(
        rate=len(latencies) / window,
        p50_ms=_percentile(latencies, 50), p99_ms=_percentile(latencies, 99), errors=errors,
        client_cpu_s=(client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime),
        server_cpu_s=server.cpu_seconds() - server0, seconds=window + 0.5,
    )


def steady_and_first_latency(server: Server, name: str, base: Path, size: tuple[int, int], rounds: int) -> tuple[float, list[float]]:
    """Steady-state p50 of sequential single requests, then per new version: publish a copy,
    wait for AVAILABLE, and time the very first request pinned to that version."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    channel = grpc.insecure_channel(server.grpc)
    call = channel.unary_unary(PREDICT_METHOD, request_serializer=None, response_deserializer=None)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    payload = grpc_payload(name, size)
    for _ in range(20):
        call(payload, timeout=30)
    samples = []
    for _ in range(200):
        t0 = time.perf_counter()
        call(payload, timeout=30)
        samples.append(time.perf_counter() - t0)
    steady = statistics.median(samples)
    firsts = []
    for _ in range(rounds):
        versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
        new = versions[-1] + 1
        staging = base / f".tmp-bench-{new}"
        shutil.copytree(base / str(versions[0]), staging)
        staging.rename(base / str(new))  # atomic, like ingot.export.publishing.publish
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = name
        status.model_spec.version.value = new
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            try:
                states = models.GetModelStatus(status, timeout=5).model_version_status
                if states and states[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE:
                    break
                if states and states[0].state == get_model_status_pb2.ModelVersionStatus.END:
                    raise RuntimeError(f"version {new} failed: {states[0].status.error_message}")
            except grpc.RpcError:
                pass
            time.sleep(0.005)
        pinned = grpc_payload(name, size, version=new)
        t0 = time.perf_counter()
        call(pinned, timeout=30)
        firsts.append(time.perf_counter() - t0)
    channel.close()
    return steady, firsts


ECHO_SERVER = """
import asyncio, sys, grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
canned = predict_pb2.PredictResponse()
canned.model_spec.name = "echo"
class Echo(prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request, context):
        return canned
async def main():
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Echo(), server)
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()
asyncio.run(main())
"""


def grpc_ceiling(size: tuple[int, int], seconds: float) -> float:
    """Requests/s of a Python grpc.aio server that does nothing (a canned answer), with the same
    load generator: the most any Python gRPC server can serve on this machine."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, text=True)
    try:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the echo server did not start")
        server = Server(process, "", f"127.0.0.1:{port}", Path(os.devnull))
        return run_load(server, "grpc", "echo", size, CLIENTS, seconds).rate
    finally:
        process.kill()
        process.wait(10)


def conversion_microbenchmark(size: tuple[int, int]) -> tuple[float, float, float, float]:
    """µs per request tensor conversion: Ingot's numpy path vs tf.make_tensor_proto/make_ndarray."""
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2

    from ingot.protocol.tensors import array_from_proto, array_to_proto

    image = np.zeros((1, *size, 3), np.uint8)
    proto = tf.make_tensor_proto(image)
    out = np.random.default_rng(0).random((1, 10), dtype=np.float32)
    n = 2000

    def timed(fn) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n * 1e6

    ours_in = timed(lambda: array_from_proto("images", proto, None, max_elements=1 << 26))
    tf_in = timed(lambda: tf.make_ndarray(proto))
    ours_out = timed(lambda: array_to_proto(out, tensor_pb2.TensorProto()))
    tf_out = timed(lambda: tf.make_tensor_proto(out))
    return ours_in, tf_in, ours_out, tf_out


# --------------------------------------------------------------------------- report


def bench_model(name: str, workdir: Path, seconds: float, rounds: int) -> dict:
    architecture, size, _ = MODELS[name]
    print(f"\n=== {name}: {architecture} {size[0]}x{size[1]}, {CLIENTS} concurrent single-image clients "
          f"(load generator shares the machine: {os.cpu_count()} cores) ===", flush=True)
    base = export_model(name, workdir)
    baseline = Baseline(base / "1", size)
    baseline.measure(seconds)

    server, cold = start_server(name, base, workdir, batching=True)
    try:
        grpc_on = run_load(server, "grpc", name, size, CLIENTS, seconds)
        rest_on = run_load(server, "rest", name, size, CLIENTS, seconds)
        steady, firsts = steady_and_first_latency(server, name, base, size, rounds)
        rss_on = server.peak_rss_mib()
    finally:
        server.stop()
    baseline.measure(seconds)
    server_off, _ = start_server(name, base, workdir, batching=False)
    try:
        grpc_off = run_load(server_off, "grpc", name, size, CLIENTS, seconds)
        rss_off = server_off.peak_rss_mib()
    finally:
        server_off.stop()
    cold_server, _ = start_server(name, base, workdir, batching=True, warmup=False)
    try:
        steady_cold, firsts_cold = steady_and_first_latency(cold_server, name, base, size, rounds)
    finally:
        cold_server.stop()
    baseline.measure(seconds)
    base_rate = baseline.best
    row: dict = {"baseline": base_rate}
    print(f"in-process baseline (batch {BATCH}):        {base_rate:9.1f} predictions/s  (best of windows "
          + ", ".join(f"{w:.0f}" for w in baseline.windows) + f"; {baseline.describe()})")

    def line(label: str, load: Load) -> str:
        return (f"{label:38s} {load.rate:9.1f} predictions/s  p50 {load.p50_ms:7.2f} ms  p99 {load.p99_ms:7.2f} ms  "
                f"errors {load.errors}  cpu: server {load.server_cpu_s / load.seconds:4.2f} cores, "
                f"client {load.client_cpu_s / load.seconds:4.2f} cores")

    ceiling = grpc_ceiling(size, seconds)
    print(f"{'gRPC ceiling (a server that does nothing):':38s} {ceiling:9.1f} requests/s  = {ceiling / base_rate:.2f} x baseline")
    print(line("gRPC, batching on:", grpc_on))
    print(line("REST uint8 instances, batching on:", rest_on))
    print(line("gRPC, batching off:", grpc_off))
    warm_ratio = statistics.median(firsts) / steady
    cold_ratio = statistics.median(firsts_cold) / steady_cold
    row.update(
        ceiling_ratio=ceiling / base_rate,
        grpc_ratio=grpc_on.rate / base_rate, rest_ratio=rest_on.rate / base_rate,
        batching_gain=grpc_on.rate / grpc_off.rate, p99_ratio=grpc_on.p99_ms / grpc_off.p99_ms,
        warm_ratio=warm_ratio, cold_first_ratio=cold_ratio, cold_start_s=cold,
        rss_on=rss_on, rss_off=rss_off,
    )
    print(f"serving efficiency gRPC  (target >= 0.8):  {row['grpc_ratio']:6.2f}  ({grpc_on.rate:.0f} / {base_rate:.0f})")
    print(f"serving efficiency REST  (target >= 0.5):  {row['rest_ratio']:6.2f}  ({rest_on.rate:.0f} / {base_rate:.0f})")
    print(f"batching gain on/off     (target >= 3x):   {row['batching_gain']:6.2f}x at p99 {grpc_on.p99_ms:.1f} ms vs "
          f"{grpc_off.p99_ms:.1f} ms = {row['p99_ratio']:.2f}x (target <= 1.5x)")
    print(f"warm start, warm-up on   (target <= 2x):   first request {statistics.median(firsts) * 1000:.2f} ms vs "
          f"steady p50 {steady * 1000:.2f} ms = {warm_ratio:.2f}x  (median of {rounds} new versions)")
    print(f"warm start, warm-up off  (for contrast):   first request {statistics.median(firsts_cold) * 1000:.2f} ms vs "
          f"steady p50 {steady_cold * 1000:.2f} ms = {cold_ratio:.2f}x")
    print(f"cold start (target <= 7.5 s):              {cold:6.2f} s from `ingot serve` process start to the first 200")
    print(f"peak RSS of the server under load:         {rss_on:6.0f} MiB batching on, {rss_off:.0f} MiB batching off")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured window (default 4)")
    parser.add_argument("--models", default="cnn,mobilenet_v2", help="comma-separated: " + ",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=3, help="new versions timed for the warm start (default 3)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    workdir = Path(tempfile.mkdtemp(prefix="ingot-bench-serving-"))
    try:
        rows = {name: bench_model(name, workdir, args.duration, args.rounds) for name in names}
        ours_in, tf_in, ours_out, tf_out = conversion_microbenchmark(MODELS[names[0]][1])
        print(f"\nTensorProto conversion per request: input {ours_in:.1f} us (numpy) vs {tf_in:.1f} us "
              f"(tf.make_ndarray); output {ours_out:.1f} us vs {tf_out:.1f} us (tf.make_tensor_proto)")
        print("\nsummary (ratios measured in this run):")
        print(f"{'model':14s} {'ceiling':>8s} {'gRPC/base':>9s} {'REST/base':>9s} {'batch gain':>10s} {'p99 on/off':>10s} "
              f"{'warm 1st/p50':>12s} {'no-warmup':>9s} {'cold s':>7s} {'RSS MiB':>8s}")
        for name, r in rows.items():
            print(f"{name:14s} {r['ceiling_ratio']:8.2f} {r['grpc_ratio']:9.2f} {r['rest_ratio']:9.2f} {r['batching_gain']:9.2f}x "
                  f"{r['p99_ratio']:9.2f}x {r['warm_ratio']:11.2f}x {r['cold_first_ratio']:8.2f}x "
                  f"{r['cold_start_s']:7.2f} {r['rss_on']:8.0f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
