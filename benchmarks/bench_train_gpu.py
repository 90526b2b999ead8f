"""Training speed on whatever GPU is present: images/s and time to a target validation accuracy,
with float32 against mixed precision and XLA (the recipe settings `mixed_precision` and
`jit_compile`), each measured in the same run.

Data: CIFAR-10 when the archive is given (`--cifar PATH/cifar-10-python.tar.gz`), else the bundled
digits (32x32). The data is ingested once into a Dataset artifact (TFRecord shards) and every
variant trains from it, as the pipeline's train step does. On a machine without a GPU it says so
and exits 0 (the CPU figures are in bench_input_pipeline.py and bench_pipeline.py).

    .venv/bin/python benchmarks/bench_train_gpu.py [--cifar PATH] [--target 0.9] [--epochs 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = {
    "float32": {"mixed_precision": False, "jit_compile": False},
    "mixed": {"mixed_precision": True, "jit_compile": False},
    "mixed+xla": {"mixed_precision": True, "jit_compile": True},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", default=None, help="CIFAR-10 python archive or batch directory")
    parser.add_argument("--target", type=float, default=None,
                        help="validation accuracy to time (default: 0.95 on digits, 0.70 on CIFAR-10)")
    parser.add_argument("--epochs", type=int, default=None, help="epoch cap (default: 20 digits, 30 CIFAR-10)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    return parser.parse_args(argv)


def target_timer(target: float):
    """A Keras callback recording training images/s per epoch and when val_accuracy first
    reaches `target` (built here: keras is imported lazily)."""
    import keras

    class TargetTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch_seconds: list[float] = []
            self.reached_at: float | None = None
            self.reached_epoch: int | None = None

        def on_train_begin(self, logs=None) -> None:
            self.started = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self.epoch_started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            now = time.perf_counter()
            self.epoch_seconds.append(now - self.epoch_started)
            if self.reached_at is None and (logs or {}).get("val_accuracy", 0.0) >= target:
                self.reached_at, self.reached_epoch = now - self.started, epoch + 1

    return TargetTimer()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print(f"no GPU visible to TensorFlow {tf.__version__} on this machine ({os.cpu_count()} CPUs): "
              "nothing to measure here; run this on a GPU machine")
        return 0

    from ingot.retrain.config import resolve_config
    from ingot.retrain.steps import ingest
    from ingot.train.trainer import train_model

    dataset = args.cifar or "bundled:digits"
    cifar = args.cifar is not None
    target = args.target if args.target is not None else (0.70 if cifar else 0.95)
    epochs = args.epochs or (30 if cifar else 20)
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        print(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    details = tf.config.experimental.get_device_details(gpus[0])
    base = {"architecture": "cnn", "image_size": [32, 32], "epochs": epochs, "batch_size": args.batch_size,
            "learning_rate": 0.002, "early_stopping_patience": epochs, "verbose": "quiet",
            "validation_fraction": 0.1 if cifar else 0.15, "test_fraction": 0.1 if cifar else 0.15,
            "augmentation": {"flip": "horizontal" if cifar else "none", "rotation": 0.0, "zoom": 0.0}}
    with tempfile.TemporaryDirectory(prefix="ingot-bench-gpu-") as work:
        started = time.perf_counter()
        artifact = ingest(dataset, os.path.join(work, "dataset"), resolve_config(base)).artifact
        print(f"GPU: {details.get('device_name', gpus[0].name)} x{len(gpus)}, TensorFlow {tf.__version__}; "
              f"{dataset}: {len(artifact.train)} train / {len(artifact.validation)} validation images, "
              f"ingested in {time.perf_counter() - started:.1f} s; batch {args.batch_size}, cap {epochs} epochs, "
              f"target val_accuracy {target:.2f}")
        results = {}
        for name in names:
            config = resolve_config({**base, **VARIANTS[name]})
            timer = target_timer(target)
            result = train_model(config, artifact, callbacks=[timer])
            steady = timer.epoch_seconds[1:] or timer.epoch_seconds
            rate = len(artifact.train) * len(steady) / sum(steady)
            reached = (f"{timer.reached_at:7.1f} s (epoch {timer.reached_epoch})" if timer.reached_at is not None
                       else f"not reached in {len(timer.epoch_seconds)} epochs")
            best = max(result.history.get("val_accuracy", [0.0]))
            results[name] = rate
            print(f"  {name:<10} {rate:10.0f} images/s (epochs 2+; epoch 1 {timer.epoch_seconds[0]:.1f} s)   "
                  f"to {target:.2f}: {reached}   best val_accuracy {best:.4f}")
    if "float32" in results:
        for name, rate in results.items():
            if name != "float32":
                print(f"  {name} / float32 = {rate / results['float32']:.2f}x images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
