"""Training throughput of Ingot's tf.data input pipeline against two baselines, in one run.

The same `cnn` model is trained for the same number of steps from the same images fed four ways:
  naive      a Python generator that opens, decodes and resizes each file with Pillow per epoch
  tf.data    `ingot.data.pipeline.make_tf_dataset` over the image folder (parallel decode and resize,
             cache, shuffle, prefetch)
  tfrecord   the same pipeline over the Dataset artifact the pipeline's steps pass (TFRecord
             shards read through parallel interleave), what train steps read since the artifact
             became self-contained
  in-memory  the already-decoded images as NumPy arrays (the ceiling: no input work at all)
It also prints the ingest cost of the artifact (folder scan, then writing the shards) and its
size against the source images.

By default the images are 2,000 photo crops (224x224 JPEG, cut from scikit-learn's bundled sample
photos into a temp folder), so decoding costs what it costs on real data; `--dataset` points it
at any image folder instead (the 8x8 digits decode so cheaply that every feeder ties on them).
Epoch 1 is reported apart (it fills tf.data's cache); throughput is over the later epochs.
Targets: tf.data >= 1.3x naive, and >= 0.9x in-memory; tfrecord >= 0.9x tf.data (folder).

Usage: python benchmarks/bench_input_pipeline.py [--dataset URI] [--images N] [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="an image-folder URI (default: generated photo crops)")
    parser.add_argument("--images", type=int, default=2000, help="photo crops to generate")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per feeder (first one reported apart)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    return parser.parse_args(argv)


def epoch_timer():
    """A Keras callback recording wall time per epoch (built here: keras is imported lazily)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.times.append(time.perf_counter() - self._start)

    return EpochTimer()


def photo_folder(root: str, count: int, classes: int = 10, crop: int = 224, seed: int = 0) -> str:
    """An image folder of JPEG crops from the two real photos scikit-learn ships offline."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    for index in range(count):
        photo = photos[index % len(photos)]
        top = int(rng.integers(0, photo.shape[0] - crop))
        left = int(rng.integers(0, photo.shape[1] - crop))
        folder = os.path.join(root, f"class_{index % classes}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(photo[top:top + crop, left:left + crop]).save(
            os.path.join(folder, f"{index:05d}.jpg"), quality=90)
    return root


def fresh_model(num_classes: int, size: int):
    import keras

    from ingot.models.builders import build_model

    keras.utils.set_random_seed(0)
    model = build_model("cnn", num_classes=num_classes, image_size=(size, size))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def naive_batches(paths, labels, size: int, batch_size: int, epochs: int, seed: int = 0):
    """What a first attempt looks like: decode every file in Python, every epoch, one at a time."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(paths))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            images = np.stack([
                np.asarray(Image.open(paths[i]).convert("RGB").resize((size, size), Image.BILINEAR),
                           dtype=np.float32)
                for i in chunk
            ])
            yield images, labels[chunk]


def measure(name: str, fit, n_images: int, epochs: int) -> dict:
    timer = epoch_timer()
    fit(timer)
    first, rest = timer.times[0], timer.times[1:]
    steady = n_images * len(rest) / sum(rest)
    print(f"  {name:<10} epoch 1: {n_images / first:8.0f} img/s   later epochs: {steady:8.0f} img/s")
    return {"first": n_images / first, "steady": steady}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tempfile

    import numpy as np
    import tensorflow as tf

    from ingot.data.pipeline import make_tf_dataset
    from ingot.data.records import write_dataset_artifact
    from ingot.data.sources import load_dataset
    from ingot.data.splits import split_dataset

    workdir = tempfile.TemporaryDirectory(prefix="ingot-bench-input-")
    uri = args.dataset or photo_folder(workdir.name, args.images)
    started = time.perf_counter()
    data, _report = load_dataset(uri)
    scan_s = time.perf_counter() - started
    if data.paths is None:
        print("this benchmark needs an image-folder dataset (files to decode)", file=sys.stderr)
        return 2
    size, batch, epochs = args.image_size, args.batch_size, args.epochs
    n = len(data)
    labels = data.labels.astype("int64")
    classes = len(data.class_names)
    steps = -(-n // batch)
    print(f"input pipeline benchmark: {n} images, {classes} classes, {size}x{size}, batch {batch}, "
          f"{epochs} epochs, {os.cpu_count()} CPUs, TF {tf.__version__}")

    results = {}
    model = fresh_model(classes, size)
    results["naive"] = measure(
        "naive",
        lambda cb: model.fit(naive_batches(list(data.paths), labels, size, batch, epochs),
                             epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[cb]),
        n, epochs)

    model = fresh_model(classes, size)
    dataset = make_tf_dataset(data, image_size=(size, size), batch_size=batch, training=True, seed=0)
    results["tf.data"] = measure(
        "tf.data", lambda cb: model.fit(dataset, epochs=epochs, verbose=0, callbacks=[cb]), n, epochs)

    # The Dataset artifact: every image in its train split, so the same images feed the model.
    started = time.perf_counter()
    artifact = write_dataset_artifact(split_dataset(data, validation_fraction=0.0, test_fraction=0.0, seed=0),
                                      os.path.join(workdir.name, "artifact"))
    write_s = time.perf_counter() - started
    source_bytes = sum(os.path.getsize(path) for path in data.paths)
    artifact_bytes = sum(shard.size for _, part in artifact.items() for shard in part.shards)
    model = fresh_model(classes, size)
    records = make_tf_dataset(artifact.train, image_size=(size, size), batch_size=batch, training=True, seed=0)
    results["tfrecord"] = measure(
        "tfrecord", lambda cb: model.fit(records, epochs=epochs, verbose=0, callbacks=[cb]), n, epochs)

    # The ceiling: decoded once, up front, outside the timed region.
    arrays = np.concatenate([images.numpy() for images, _ in make_tf_dataset(
        data, image_size=(size, size), batch_size=batch, training=False)])
    model = fresh_model(classes, size)
    results["in-memory"] = measure(
        "in-memory",
        lambda cb: model.fit(arrays, labels, batch_size=batch, shuffle=True, epochs=epochs,
                             verbose=0, callbacks=[cb]),
        n, epochs)

    vs_naive = results["tf.data"]["steady"] / results["naive"]["steady"]
    vs_memory = results["tf.data"]["steady"] / results["in-memory"]["steady"]
    print(f"  tf.data / naive     = {vs_naive:5.2f}x  (target >= 1.3)")
    print(f"  tf.data / in-memory = {vs_memory:5.2f}x  (target >= 0.9)")
    print(f"  tfrecord / tf.data  = {results['tfrecord']['steady'] / results['tf.data']['steady']:5.2f}x "
          f"(target >= 0.9); epoch 1 (fills the cache): "
          f"{results['tfrecord']['first'] / results['tf.data']['first']:5.2f}x")
    print(f"  ingest: folder scan {scan_s:.1f} s + artifact write {write_s:.1f} s "
          f"({n / (scan_s + write_s):.0f} images/s); artifact {artifact_bytes / 1e6:.1f} MB in "
          f"{len(artifact.train.shards)} shard(s) vs source images {source_bytes / 1e6:.1f} MB "
          f"({artifact_bytes / source_bytes:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
