"""The cost of TensorFlow op determinism in training time, measured in one process: the same tiny
training (the seed CNN on synthetic 32x32 images) with `deterministic: true` and `false`,
alternated for --runs rounds after one warm-up of each; prints each time, the medians and the
ratio on / off. Also checks that two deterministic runs give identical predictions.

    .venv/bin/python benchmarks/bench_determinism.py [--runs 3] [--images 1200] [--epochs 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    from ingot.data.dataset import LabelledImages
    from ingot.data.splits import split_dataset
    from ingot.train.config import TrainConfig
    from ingot.train.trainer import train_model

    rng = np.random.default_rng(0)
    labels = np.arange(args.images) % 10
    images = (labels * 25)[:, None, None, None] + rng.integers(-40, 41, size=(args.images, 32, 32, 3))
    data = LabelledImages(class_names=[f"c{i}" for i in range(10)], labels=labels,
                          images=images.clip(0, 255).astype(np.uint8))
    splits = split_dataset(data, validation_fraction=0.1, test_fraction=0.1, seed=0)
    test = splits.test.images.astype(np.float32)

    def run(deterministic: bool) -> tuple[float, np.ndarray]:
        config = TrainConfig(epochs=args.epochs, batch_size=64, verbose="lines", seed=1,
                             deterministic=deterministic, early_stopping_patience=args.epochs,
                             augmentation={"flip": "horizontal", "rotation": 0.05, "zoom": 0.05})
        started = time.perf_counter()
        model = train_model(config, splits).model
        seconds = time.perf_counter() - started
        return seconds, np.asarray(model(test, training=False))

    run(True), run(False)  # warm-up: graph tracing and first-call costs
    times: dict[bool, list[float]] = {True: [], False: []}
    outputs: list[np.ndarray] = []
    for _ in range(args.runs):
        for deterministic in (True, False):
            seconds, probabilities = run(deterministic)
            times[deterministic].append(seconds)
            if deterministic:
                outputs.append(probabilities)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"training {len(splits.train)} images x {args.epochs} epochs, {args.runs} runs each (CPU)")
    print(f"determinism on : {', '.join(f'{t:.2f}s' for t in times[True])}  median {on:.2f}s")
    print(f"determinism off: {', '.join(f'{t:.2f}s' for t in times[False])}  median {off:.2f}s")
    print(f"ratio on/off: {on / off:.2f}")
    spread = max(float(np.max(np.abs(o - outputs[0]))) for o in outputs)
    print(f"deterministic runs: max |dp| between runs = {spread:.2e}")


if __name__ == "__main__":
    main()
