"""int8 benchmark: the float SavedModel against the int8 model.tflite the export writes beside it.

For each model, exported once through `ingot.export.saved_model.export_saved_model` with an int8
plan (so the model.tflite is exactly what the evaluate step ships), in one run:

1. in-process latency p50/p99 at batch 1 and batch 32: the SavedModel's `serving_default`
   (tf.saved_model.load, uint8 input, TensorFlow's default threads) vs the int8 model through a
   LiteRT interpreter (`ingot.export.tflite.Int8Model`, XNNPACK) with 1 thread (what each
   interpreter of `ingot serve --prefer_tflite_model` uses) and with as many threads as CPUs
   (same cores as TensorFlow), timed in turns so a shared machine's load falls on all alike;
   ratios are float p50 / int8 p50, and the same for the process CPU time each call costs (the
   compute, which other processes' load does not inflate);
2. sizes: the SavedModel (without assets.extra) vs model.tflite;
3. accuracy: the digits CNN is trained here on scikit-learn's bundled digits (1,200 train rows,
   597 test rows, 32x32) and both models are scored on the same test rows (the model card's int8
   section, written by the export); MobileNetV2 (160x160, 5 classes) has random weights, since no
   weights can be downloaded here: its figures are speed and size only;
4. served: `ingot serve` (batching on, the same batching parameters for both) with and without
   `--prefer_tflite_model`, 16 concurrent single-image gRPC clients, predictions/s and p50/p99,
   predictions per server CPU-second (what the server does with the cores it gets: on a shared
   machine throughput also depends on how many threads compete), and the cold start (process
   start to the first answer).

    .venv/bin/python benchmarks/bench_quantized.py [--duration 4] [--models cnn,mobilenet_v2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODELS = {
    # name: (architecture, image size, classes)
    "cnn": ("cnn", (32, 32), 10),
    "mobilenet_v2": ("mobilenet_v2", (160, 160), 5),
}
ITERATIONS = {("cnn", 1): 300, ("cnn", 32): 100, ("mobilenet_v2", 1): 100, ("mobilenet_v2", 32): 15}
CLIENTS = 16
BATCHING = """
max_batch_size { value: 32 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 64 }
num_batch_threads { value: 2 }
"""


def digits(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as RGB uint8 at `size` (bilinear), shuffled with a fixed seed."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    data = load_digits()
    pixels = (data.images * (255.0 / 16.0))[..., np.newaxis].astype(np.float32)
    images = tf.image.resize(np.repeat(pixels, 3, axis=-1), size, method="bilinear").numpy()
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    return images[order], data.target[order].astype(np.int64)


def export_model(name: str, workdir: Path) -> tuple[Path, dict, float]:
    """Build (train the CNN), export with the int8 plan and return (version dir, int8 card section,
    seconds spent converting and judging the int8 model)."""
    import keras

    from ingot.export.saved_model import export_saved_model
    from ingot.export.tflite import Int8Plan
    from ingot.models.builders import build_model

    architecture, size, classes = MODELS[name]
    keras.utils.set_random_seed(0)
    images, labels = digits(size)
    train, test = slice(0, 1200), slice(1200, None)
    options = {"weights": None} if architecture != "cnn" else {}
    model = build_model(architecture, num_classes=classes, image_size=size, **options)
    if name == "cnn":
        model.compile(optimizer=keras.optimizers.Adam(0.002), loss="sparse_categorical_crossentropy")
        model.fit(images[train].astype(np.float32), labels[train], epochs=8, batch_size=32, verbose=0)
        test_images, test_labels, max_loss = images[test], labels[test], 0.005
    else:
        # Random weights: the int8 model's answers are not judged (tolerance 1), only timed.
        test_images, test_labels, max_loss = images[test][:64], labels[test][:64] % classes, 1.0
    probabilities = np.asarray(model.predict(test_images.astype(np.float32), batch_size=32, verbose=0))
    class_names = [f"class_{i}" for i in range(classes)]
    card = {
        "name": name, "architecture": architecture, "training_config": {"benchmark": True},
        "data_hash": "sha256:" + "00" * 32,
        "metrics": {"accuracy": 0.0, "per_class": {c: {"f1": 0.0} for c in class_names}},
        "drift_baseline": {},
    }
    plan = Int8Plan(calibration_images=images[train], test_images=test_images, test_labels=test_labels,
                    float_probabilities=probabilities, max_loss=max_loss)
    started = time.perf_counter()
    target = workdir / "repo" / name / "1"
    export_saved_model(model, target, class_names=class_names, image_size=size, model_card=card,
                       warmup_batch_sizes=(1, 32), int8=plan)
    seconds = time.perf_counter() - started
    section = json.loads((target / "assets.extra" / "model_card.json").read_text())["int8"]
    return target, section, seconds


def interleaved(calls: dict[str, object], iterations: int) -> dict[str, dict[str, float]]:
    """p50/p99 (ms) of each call, timed in turns (a, b, c, a, b, c, ...), so load from other
    processes on a shared machine falls on every contender alike."""
    for call in calls.values():
        for _ in range(3):
            call()  # type: ignore[operator]
    times: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, float] = {name: 0.0 for name in calls}
    for _ in range(iterations):
        for name, call in calls.items():
            t0, c0 = time.perf_counter(), time.process_time()
            call()  # type: ignore[operator]
            times[name].append(time.perf_counter() - t0)
            cpu[name] += time.process_time() - c0
    return {name: {"p50": float(np.percentile(t, 50)) * 1000, "p99": float(np.percentile(t, 99)) * 1000,
                   "cpu": cpu[name] / iterations * 1000} for name, t in times.items()}


def in_process(name: str, version_dir: Path) -> dict:
    import tensorflow as tf

    from ingot.export.tflite import Int8Model

    _, size, _ = MODELS[name]
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    threads = os.cpu_count() or 1
    runners = {1: Int8Model(model_path=version_dir / "model.tflite", num_threads=1),
               threads: Int8Model(model_path=version_dir / "model.tflite", num_threads=threads)}
    rows = {}
    for batch in (1, 32):
        images = np.random.default_rng(batch).integers(0, 256, (batch, *size, 3), dtype=np.uint8)
        tensor = tf.constant(images)
        calls: dict[str, object] = {"float": lambda: signature(images=tensor)["probabilities"].numpy()}
        for count, runner in runners.items():
            calls[f"int8 {count}t"] = lambda r=runner: r.predict(images)
        rows[batch] = interleaved(calls, ITERATIONS[(name, batch)])
    return rows


def served(name: str, base: Path, workdir: Path, seconds: float) -> dict:
    import bench_serving as serving

    _, size, _ = MODELS[name]
    results = {}
    params = workdir / "batching.config"
    params.write_text(BATCHING)
    for label, extra in (("float", []), ("int8", ["--prefer_tflite_model=true"])):
        server, cold = start(name, base, workdir, params, extra)
        try:
            load = serving.run_load(server, "grpc", name, size, CLIENTS, seconds)
        finally:
            server.stop()
        results[label] = {"rate": load.rate, "p50": load.p50_ms, "p99": load.p99_ms, "errors": load.errors,
                          "cold_s": cold, "server_cpu_s": load.server_cpu_s,
                          # Robust to other processes' load: on a busy machine a server with more
                          # runnable threads simply gets a larger share of the cores.
                          "per_cpu_s": load.rate * load.seconds / max(load.server_cpu_s, 1e-9)}
    return results


def start(name: str, base: Path, workdir: Path, params: Path, extra: list[str]):
    """`ingot serve` as a subprocess with batching; returns (server, cold start seconds)."""
    import subprocess

    import bench_serving as serving

    grpc_port, rest_port = serving.free_port(), serving.free_port()
    args = [sys.executable, "-m", "ingot.cli.main", "serve", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
            f"--model_name={name}", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0",
            "--enable_batching=true", f"--batching_parameters_file={params}", "--log_level=WARNING", *extra]
    log = workdir / f"serve-{name}-{int(time.time() * 1000)}.log"
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{rest_port}"
    serving.wait_for_first_answer(process, url, name, log, started + 180)
    return serving.Server(process, url, f"127.0.0.1:{grpc_port}", log), time.perf_counter() - started


def size_of(version_dir: Path) -> tuple[int, int]:
    from ingot.export.tflite import directory_bytes

    tflite = (version_dir / "model.tflite").stat().st_size
    return directory_bytes(version_dir, skip=("assets.extra", "model.tflite")), tflite


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per served load window")
    parser.add_argument("--models", default="cnn,mobilenet_v2")
    args = parser.parse_args()
    import ai_edge_litert
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, LiteRT {getattr(ai_edge_litert, '__version__', '?')}, "
          f"{os.cpu_count()} CPUs; p50/p99 in ms")
    with tempfile.TemporaryDirectory(prefix="bench-quantized-") as scratch:
        workdir = Path(scratch)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            version_dir, section, export_s = export_model(name, workdir)
            if not section["shipped"]:
                print(f"{name}: int8 model not shipped: {section['reason']}")
                continue
            float_bytes, int8_bytes = size_of(version_dir)
            print(f"\n== {name} {MODELS[name][1][0]}x{MODELS[name][1][1]} "
                  f"({'trained on digits' if name == 'cnn' else 'random weights'})")
            print(f"size: SavedModel {float_bytes / 1e6:.2f} MB, model.tflite {int8_bytes / 1e6:.2f} MB "
                  f"({float_bytes / int8_bytes:.1f}x smaller); export with int8 conversion+judging {export_s:.1f} s "
                  f"({section['calibration_images']} calibration images)")
            if name == "cnn":
                print(f"accuracy on {section['test_rows']} digits test rows: float {section['float_accuracy']:.4f}, "
                      f"int8 {section['accuracy']:.4f} ({100 * section['difference']:+.2f} points), "
                      f"agreement {100 * section['agreement']:.2f}%; {section['comparison']['method']} interval "
                      f"[{100 * section['comparison']['interval'][0]:+.2f}, "
                      f"{100 * section['comparison']['interval'][1]:+.2f}] points")
            rows = in_process(name, version_dir)
            print("in-process: p50 / p99 wall ms (process CPU ms per call)")
            print("           | " + " | ".join(f"{k:>27}" for k in rows[1]) + " | float/int8 p50 (CPU)")
            for batch, entry in rows.items():
                cells = " | ".join(f"{v['p50']:8.2f} / {v['p99']:8.2f} ({v['cpu']:7.2f})" for v in entry.values())
                ratios = ", ".join(f"{k}: {entry['float']['p50'] / v['p50']:.2f}x ({entry['float']['cpu'] / v['cpu']:.2f}x)"
                                   for k, v in entry.items() if k != "float")
                print(f"batch {batch:>2}   | {cells} | {ratios}")
            result = served(name, version_dir.parent, workdir, args.duration)
            for label, entry in result.items():
                print(f"ingot serve {label:>5} gRPC, {CLIENTS} clients, batching: {entry['rate']:7.1f} pred/s, "
                      f"p50 {entry['p50']:.1f} ms, p99 {entry['p99']:.1f} ms, errors {entry['errors']}, "
                      f"cold start {entry['cold_s']:.1f} s, server CPU {entry['server_cpu_s']:.1f} s "
                      f"({entry['per_cpu_s']:.0f} pred per server CPU-second)")
            print(f"served int8/float: throughput {result['int8']['rate'] / result['float']['rate']:.2f}x, "
                  f"predictions per server CPU-second {result['int8']['per_cpu_s'] / result['float']['per_cpu_s']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
