"""Confidence cascade on digits: how much model compute a small model in front of the full one saves,
and at what accuracy, measured in one run against the full model alone (the baseline).

Data: scikit-learn's 1,797 digits, upscaled to 32x32 RGB (the digits recipe's input), split
50/25/25 (stratified, seeded) with the project's own splitter: a larger validation split than
the recipe's, because the threshold is chosen on it.
Full model: the digits recipe's CNN (`build_model("cnn")`, 122,570 parameters).
Small model: average-pool the 32x32 input back to 8x8, 3x3 convolutions of 16 and 32 filters, a
softmax head (about 17,000 parameters).
Threshold: `ingot.evaluate.cascade.calibrate` on the validation split (the lowest threshold within
--max-loss points of the full model); every figure below is then measured on the test split.

Compute per request: (1) multiply-accumulates counted from the layer shapes, the cascade paying
the small model on every request and the full model on the rows it does not answer; (2) measured
in-process wall time of each exported SavedModel's `serving_default` (the graph `ingot serve`
runs) at batch 1 (p50 of --calls calls) and per image at batch 64 (median), the two models'
calls interleaved.

    .venv/bin/python benchmarks/bench_cascade.py [--seed 42] [--max-loss 0.5] [--calls 400] [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = (32, 32)


def digits_splits(seed: int):
    import tensorflow as tf
    from sklearn.datasets import load_digits

    from ingot.data.dataset import LabelledImages
    from ingot.data.splits import split_dataset

    digits = load_digits()
    gray = (digits.images * (255.0 / 16.0))[..., None]
    images = tf.image.resize(gray, SIZE, method="bilinear").numpy()
    images = np.clip(np.round(np.repeat(images, 3, axis=-1)), 0, 255).astype(np.uint8)
    data = LabelledImages(class_names=[str(i) for i in range(10)], labels=digits.target, images=images)
    return split_dataset(data, validation_fraction=0.25, test_fraction=0.25, seed=seed)


def small_model():
    import keras
    from keras import layers

    inputs = keras.Input(shape=(*SIZE, 3), name="images", dtype="float32")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.AveragePooling2D(4)(x)  # back to the digits' native 8x8
    x = layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="small")


def train(model, splits, *, epochs: int, learning_rate: float):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=6, restore_best_weights=True)
    model.fit(splits.train.images.astype("float32"), splits.train.labels, batch_size=32, epochs=epochs,
              validation_data=(splits.validation.images.astype("float32"), splits.validation.labels),
              callbacks=[stop], verbose=0)
    return model


def macs(model) -> int:
    """Multiply-accumulates per image of the Conv2D and Dense layers (the rest is negligible)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            _, h, w, out = layer.output.shape
            total += int(h * w * out * kh * kw * layer.input.shape[-1])
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.input.shape[-1] * layer.units)
    return total


def exported(model, directory: Path, class_names):
    import tensorflow as tf

    from ingot.export.saved_model import export_saved_model

    card = {"name": "digits", "architecture": model.name, "training_config": {}, "data_hash": "sha256:" + "0" * 64,
            "metrics": {"accuracy": None, "per_class": {name: {} for name in class_names}}, "drift_baseline": {}}
    export_saved_model(model, directory, class_names=class_names, image_size=SIZE, model_card=card,
                       warmup_batch_sizes=(1,))
    return tf.saved_model.load(str(directory)).signatures["serving_default"]


def timing(serves: dict, images: np.ndarray, calls: int) -> dict[str, tuple[float, float]]:
    """{name: (p50 ms of one request of one image, median ms per image at batch 64)}; the models'
    calls interleave, so a busy machine slows both alike."""
    import tensorflow as tf

    batch = tf.constant(np.resize(images, (64, *images.shape[1:])))
    for serve in serves.values():
        for _ in range(20):
            serve(images=tf.constant(images[:1]))
            serve(images=batch)
    single: dict[str, list[float]] = {name: [] for name in serves}
    batched: dict[str, list[float]] = {name: [] for name in serves}
    for i in range(calls):
        x = tf.constant(images[i % len(images):][:1])
        for name, serve in serves.items():
            started = time.perf_counter()
            serve(images=x)["probabilities"].numpy()
            single[name].append(time.perf_counter() - started)
        if i % 4 == 0:
            for name, serve in serves.items():
                started = time.perf_counter()
                serve(images=batch)["probabilities"].numpy()
                batched[name].append((time.perf_counter() - started) / 64)
    return {name: (float(np.median(single[name]) * 1000), float(np.median(batched[name]) * 1000)) for name in serves}


def probabilities(serve, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    return np.concatenate([serve(images=tf.constant(images[i:i + 256]))["probabilities"].numpy()
                           for i in range(0, len(images), 256)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-loss", type=float, default=0.5, help="accuracy loss allowed, points")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--models-dir", default=None,
                        help="keep the trained Keras models here and reuse them on the next run")
    args = parser.parse_args()

    import keras

    from ingot.evaluate.cascade import calibrate
    from ingot.models.builders import build_model

    keras.utils.set_random_seed(args.seed)
    splits = digits_splits(args.seed)
    names = splits.train.class_names
    started = time.perf_counter()
    kept = Path(args.models_dir) if args.models_dir else None
    if kept is not None and (kept / "full.keras").exists() and (kept / "small.keras").exists():
        full, small = keras.models.load_model(kept / "full.keras"), keras.models.load_model(kept / "small.keras")
    else:
        full = train(build_model("cnn", num_classes=10, image_size=SIZE), splits, epochs=args.epochs,
                     learning_rate=1e-3)
        small = train(small_model(), splits, epochs=args.epochs * 2, learning_rate=3e-3)
        if kept is not None:
            kept.mkdir(parents=True, exist_ok=True)
            full.save(kept / "full.keras")
            small.save(kept / "small.keras")
    trained_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        full_serve = exported(full, Path(tmp) / "full", names)
        small_serve = exported(small, Path(tmp) / "small", names)
        val, test = splits.validation, splits.test
        chosen = calibrate(probabilities(small_serve, val.images), probabilities(full_serve, val.images),
                           val.labels, max_loss_points=args.max_loss)
        small_p, full_p = probabilities(small_serve, test.images), probabilities(full_serve, test.images)
        timed = timing({"full": full_serve, "small": small_serve}, test.images, args.calls)
        (full_ms, full_img_ms), (small_ms, small_img_ms) = timed["full"], timed["small"]

    if chosen.chosen is None:
        print(f"no threshold keeps the validation loss within {args.max_loss} points: no cascade")
        return
    threshold = chosen.chosen.threshold
    on_test = calibrate(small_p, full_p, test.labels, max_loss_points=100).point_at(threshold)  # figures only
    full_acc = float((full_p.argmax(1) == test.labels).mean())
    small_acc = float((small_p.argmax(1) == test.labels).mean())
    coverage = on_test.coverage
    full_macs, small_macs = macs(full), macs(small)
    cascade_macs = small_macs + (1 - coverage) * full_macs
    cascade_ms = small_ms + (1 - coverage) * full_ms
    cascade_img_ms = small_img_ms + (1 - coverage) * full_img_ms

    print(f"digits: train {len(splits.train)}, validation {len(val)}, test {len(test)}; trained in {trained_s:.0f} s")
    print(f"full  CNN   {full.count_params():>7} params  {full_macs / 1e6:6.2f} M MACs/image  test accuracy {full_acc:.2%}")
    print(f"small CNN   {small.count_params():>7} params  {small_macs / 1e6:6.3f} M MACs/image  test accuracy {small_acc:.2%}")
    print(f"threshold (validation, max loss {args.max_loss} pts): {threshold:.6f}  "
          f"validation coverage {chosen.chosen.coverage:.1%}, loss {chosen.chosen.loss_points:.2f} pts")
    print()
    print(f"{'test split':<28}{'full alone':>12}{'cascade':>12}{'ratio':>9}")
    print(f"{'accuracy':<28}{full_acc:>12.2%}{on_test.accuracy:>12.2%}{'':>9}   delta {on_test.accuracy - full_acc:+.2%}")
    print(f"{'coverage (small answers)':<28}{'-':>12}{coverage:>12.1%}")
    print(f"{'MACs per request':<28}{full_macs / 1e6:>11.2f}M{cascade_macs / 1e6:>11.2f}M{full_macs / cascade_macs:>8.2f}x")
    print(f"{'ms per request, batch 1 p50':<28}{full_ms:>12.3f}{cascade_ms:>12.3f}{full_ms / cascade_ms:>8.2f}x"
          f"   (small alone {small_ms:.3f} ms)")
    print(f"{'ms per image, batch 64':<28}{full_img_ms:>12.4f}{cascade_img_ms:>12.4f}{full_img_ms / cascade_img_ms:>8.2f}x"
          f"   (small alone {small_img_ms:.4f} ms)")
    print()
    test_curve = calibrate(small_p, full_p, test.labels, max_loss_points=100)
    print(f"{'threshold':>10} | {'validation: coverage, accuracy, loss pts':<40} | test: coverage, accuracy, loss pts")
    for p in chosen.table():
        t = test_curve.point_at(p.threshold)
        mark = "  <- chosen" if p.threshold == threshold else ""
        print(f"{p.threshold:>10.4f} | {p.coverage:>10.1%} {p.accuracy:>9.2%} {p.loss_points:>7.2f}{'':<11} | "
              f"{t.coverage:>10.1%} {t.accuracy:>9.2%} {t.loss_points:>7.2f}{mark}")


if __name__ == "__main__":
    main()
