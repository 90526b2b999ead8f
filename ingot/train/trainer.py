"""Training: the Keras fit loop with the production defaults Ingot enforces.

Early stopping always hands back the best epoch's weights (never the last epoch's), mixed
precision and the distribution strategy follow the hardware actually found, and logs are one
line per epoch when nobody is watching a terminal (pods, CI, pipeline steps).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from ingot.errors import DataError
from ingot.models.builders import build_model, unfreeze_top_layers
from ingot.train.config import TrainConfig

LOSS = "sparse_categorical_crossentropy"
MONITOR = "val_loss"
FINE_TUNE_LR_FACTOR = 0.1
BEST_CHECKPOINT = "best.keras"
LAST_CHECKPOINT = "last.keras"


@dataclass
class TrainResult:
    """A trained model (at its best validation epoch) and how it got there."""

    model: Any
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int  # 1-based, over both stages
    hardware: dict[str, Any]
    duration_s: float
    images_per_second: float
    stages: list[dict[str, Any]] = field(default_factory=list)
    # Epochs a restarted worker restored from its BackupAndRestore folder instead of running; the
    # history (and best_epoch, 1-based into it) cover only the epochs run after them.
    resumed_epochs: int = 0

    @property
    def best_metrics(self) -> dict[str, float]:
        """Every logged metric at the best epoch (the weights the model holds)."""
        return {key: values[self.best_epoch - 1] for key, values in self.history.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable summary (no model) for model cards and pipeline metadata."""
        return {
            "history": self.history,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "hardware": self.hardware,
            "duration_s": self.duration_s,
            "images_per_second": self.images_per_second,
            "stages": self.stages,
            "resumed_epochs": self.resumed_epochs,
        }


def make_strategy(config: TrainConfig) -> Any:
    """The tf.distribute strategy the config asks for. `multi_worker` reads TF_CONFIG and must be
    created before any other TensorFlow work in the process (TensorFlow's rule for collectives)."""
    import tensorflow as tf

    if config.distribution == "multi_worker":
        _patch_keras_multi_worker_reduce()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def train_model(
    config: TrainConfig, splits: Any, *, callbacks: Sequence[keras.callbacks.Callback] = (), strategy: Any = None,
) -> TrainResult:
    """Train `config.architecture` on `splits.train`, early-stopping on `splits.validation`.

    `splits` is a Dataset artifact (or in-memory `DatasetSplits`); the test split is not touched
    here. Extra Keras `callbacks` run in every stage after Ingot's own. `strategy`: one made by
    `make_strategy` at process start (multi-worker); by default made here.
    """
    import tensorflow as tf

    from ingot.data.pipeline import make_tf_dataset

    if len(splits.train) == 0 or len(splits.validation) == 0:
        raise DataError(
            f"training needs non-empty train and validation splits; got {len(splits.train)} train and "
            f"{len(splits.validation)} validation images"
        )
    keras.utils.set_random_seed(config.seed)
    common = {"image_size": config.image_size, "batch_size": config.batch_size, "seed": config.seed}
    strategy = strategy or make_strategy(config)
    train_ds = make_tf_dataset(splits.train, training=True, augmentation=config.augmentation, **common)
    validation_ds = make_tf_dataset(splits.validation, training=False, augmentation=None, **common)
    if config.distribution == "multi_worker":
        # Each worker keeps its share of the batches: by file when every worker gets a shard,
        # else by element (small datasets written as one shard per split).
        options = tf.data.Options()
        policy = tf.data.experimental.AutoShardPolicy
        files = len(getattr(splits.train, "files", ()))
        workers = getattr(strategy.extended, "_num_workers", config.workers)
        options.experimental_distribute.auto_shard_policy = policy.FILE if files >= workers else policy.DATA
        train_ds, validation_ds = train_ds.with_options(options), validation_ds.with_options(options)
    return fit_classifier(
        config,
        train_ds,
        validation_ds,
        num_classes=len(splits.class_names),
        train_examples=len(splits.train),
        callbacks=callbacks,
        strategy=strategy,
    )


def fit_classifier(
    config: TrainConfig,
    train_ds: Any,
    validation_ds: Any,
    *,
    num_classes: int,
    train_examples: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    strategy: Any = None,
) -> TrainResult:
    """Build, compile and fit on ready `tf.data` datasets of (float 0..255 images, int labels)."""
    import tensorflow as tf

    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    set_determinism(config.deterministic)
    gpus = tf.config.list_physical_devices("GPU")
    mixed = use_mixed_precision(config.mixed_precision, gpu_count=len(gpus))
    previous_policy = keras.mixed_precision.global_policy()
    try:
        if mixed:
            keras.mixed_precision.set_global_policy("mixed_float16")
        strategy = strategy or make_strategy(config)
        hardware = detect_hardware(gpus, mixed_precision=mixed, strategy=strategy)
        progress_bar, lines = _output_mode(config.verbose)
        if config.verbose != "quiet":
            _emit(describe_hardware(hardware))

        with strategy.scope():
            model = build_model(
                config.architecture,
                num_classes=num_classes,
                image_size=config.image_size,
                **config.model_options(),
            )
            _compile(model, config, config.learning_rate)
        if config.distribution == "multi_worker":
            _build_from_zeros(model, config)

        best = BestWeights()
        meter = EpochMeter(train_examples, print_lines=lines)
        stages: list[dict[str, Any]] = []
        merged: dict[str, list[float]] = {}
        resumed = [0]

        def run_stage(name: str, epochs: int, learning_rate: float, **extra: Any) -> None:
            done = len(merged.get("loss", []))
            first = done + resumed[0]  # Keras counts epochs absolutely, restored ones included
            meter.stage, meter.total_epochs = name, first + epochs
            stage_callbacks = [
                best,
                keras.callbacks.EarlyStopping(
                    monitor=MONITOR, patience=config.early_stopping_patience, restore_best_weights=True
                ),
                *_checkpoints(config.checkpoint_dir, best.best),
                *_backup(config.backup_dir, name),
                meter,
                *callbacks,
            ]
            history = model.fit(
                train_ds,
                validation_data=validation_ds,
                initial_epoch=first,
                epochs=first + epochs,
                callbacks=stage_callbacks,
                shuffle=False,  # the tf.data pipeline shuffles (seeded) already
                verbose=1 if progress_bar else 0,
            )
            if history.epoch and not merged:
                resumed[0] = history.epoch[0] - first  # epochs BackupAndRestore skipped
            for key, values in history.history.items():
                merged.setdefault(key, []).extend(float(v) for v in values)
            run = len(merged["loss"]) - done
            stages.append({"name": name, "learning_rate": learning_rate, "epochs_run": run, **extra})

        run_stage("train", config.epochs, config.learning_rate)
        if config.is_transfer and config.fine_tune_layers > 0 and config.fine_tune_epochs > 0:
            fine_tune_lr = config.learning_rate * FINE_TUNE_LR_FACTOR
            with strategy.scope():
                unfrozen = unfreeze_top_layers(model, config.fine_tune_layers)
                _compile(model, config, fine_tune_lr)
            if lines:
                _emit(f"fine-tune: unfroze {len(unfrozen)} backbone layers, learning rate {fine_tune_lr:g}")
            run_stage("fine_tune", config.fine_tune_epochs, fine_tune_lr, unfrozen_layers=len(unfrozen))

        # Each stage's EarlyStopping restores its own best; this keeps the best of all stages.
        best.restore(model)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    epochs_run = len(merged["loss"])
    result = TrainResult(
        model=model,
        history=merged,
        epochs_run=epochs_run,
        best_epoch=best.epoch + 1 - resumed[0] if best.epoch is not None else epochs_run,
        hardware=hardware,
        duration_s=round(time.perf_counter() - started, 3),
        images_per_second=round(meter.images_per_second, 1),
        stages=stages,
        resumed_epochs=resumed[0],
    )
    if lines:
        metrics = format_metrics(result.best_metrics)
        _emit(f"best epoch {result.best_epoch}/{epochs_run} - {metrics} - {result.duration_s:.1f}s total")
    return result


def set_determinism(enabled: bool) -> None:
    """Turn TensorFlow op determinism on or off for this process, so a seed reproduces weights."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # no public "off" switch

    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def use_mixed_precision(setting: str | bool, *, gpu_count: int) -> bool:
    """"auto" means float16 compute only where it is faster: on a GPU."""
    if setting == "auto":
        return gpu_count > 0
    return bool(setting)


def detect_hardware(gpus: Sequence[Any], *, mixed_precision: bool, strategy: Any) -> dict[str, Any]:
    import tensorflow as tf

    devices = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        devices.append(
            {
                "device": gpu.name,
                "name": details.get("device_name", gpu.name),
                "compute_capability": ".".join(map(str, capability)) if capability else None,
            }
        )
    try:
        cpus_usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus_usable = os.cpu_count() or 1
    strategy_name = type(strategy).__name__
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": cpus_usable,
        "gpus": devices,
        "gpu_count": len(devices),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "mixed_precision": mixed_precision,
        "strategy": "default" if strategy_name.startswith("_Default") else strategy_name,
        "replicas": int(strategy.num_replicas_in_sync),
    }


def describe_hardware(hardware: dict[str, Any]) -> str:
    gpus = ", ".join(g["name"] for g in hardware["gpus"]) or "none"
    return (
        f"hardware: {hardware['cpus_usable']} CPU cores, GPUs: {gpus}, "
        f"TensorFlow {hardware['tensorflow_version']}, mixed precision "
        f"{'on' if hardware['mixed_precision'] else 'off'}, strategy {hardware['strategy']} "
        f"({hardware['replicas']} replica{'s' if hardware['replicas'] != 1 else ''})"
    )


def _patch_keras_multi_worker_reduce() -> None:
    """Keras 3.15 reduces each step's scalar logs across workers with `axis=0`, which fails for
    0-d values under MultiWorkerMirroredStrategy ("Invalid reduction dimension 0 for input with
    0 dimensions", tensorflow/tensorflow#72388). Reduce scalars with `axis=None` instead; every
    other case goes to Keras's own function unchanged."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "ingot_patched", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction not in ("auto", "mean") or not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return original(values, strategy, reduction)

        def reduce(value: Any) -> Any:
            local = strategy.experimental_local_results(value)
            if local and getattr(local[0], "shape", None) is not None and local[0].shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return original(value, strategy, reduction)

        return keras.tree.map_structure(reduce, values)

    reduce_per_replica.ingot_patched = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


def _build_from_zeros(model: keras.Model, config: TrainConfig) -> None:
    """Build model, loss and metrics from one zero batch, so Keras does not build them from the
    first distributed batch: under MultiWorkerMirroredStrategy with more than one worker, Keras
    3.15's `_maybe_symbolic_build` reduces that PerReplica batch and fails converting it."""
    import numpy as np

    height, width = config.image_size
    batch = (np.zeros((1, height, width, 3), np.float32), np.zeros((1,), np.int64))
    type(model)._maybe_symbolic_build(model, data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    return keras.optimizers.RMSprop(learning_rate=learning_rate)


def _compile(model: keras.Model, config: TrainConfig, learning_rate: float) -> None:
    # Keyword arguments: Keras 3 reads a positional third argument as loss_weights.
    model.compile(
        optimizer=make_optimizer(config.optimizer, learning_rate),
        loss=LOSS,
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )


def _backup(directory: str | None, stage: str) -> list[keras.callbacks.Callback]:
    """BackupAndRestore per stage: a restarted process resumes from the last finished epoch."""
    if not directory:
        return []
    return [keras.callbacks.BackupAndRestore(os.path.join(os.path.expanduser(directory), stage))]


def _checkpoints(directory: str | None, best_so_far: float) -> list[keras.callbacks.Callback]:
    if not directory:
        return []
    path = Path(directory).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    threshold = best_so_far if math.isfinite(best_so_far) else None
    return [
        keras.callbacks.ModelCheckpoint(
            str(path / BEST_CHECKPOINT), monitor=MONITOR, save_best_only=True,
            initial_value_threshold=threshold,
        ),
        keras.callbacks.ModelCheckpoint(str(path / LAST_CHECKPOINT)),
    ]


def _output_mode(verbose: str) -> tuple[bool, bool]:
    """(Keras progress bar, one line per epoch)."""
    if verbose == "auto":
        tty = _stdout_is_terminal()
        return tty, not tty
    return verbose == "bar", verbose == "lines"


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def format_metrics(logs: dict[str, Any]) -> str:
    """`loss 0.1234 - accuracy 0.9800 - val_loss ...`: training metrics first, loss leading."""
    order = sorted(logs, key=lambda k: (k.startswith("val_"), k.removeprefix("val_") != "loss", k))
    return " - ".join(f"{key} {float(logs[key]):.4f}" for key in order)


def _emit(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


class BestWeights(keras.callbacks.Callback):
    """Remembers the weights of the lowest val_loss across every stage it is used in."""

    def __init__(self) -> None:
        super().__init__()
        self.best = math.inf
        self.epoch: int | None = None
        self.weights: list[Any] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = (logs or {}).get(MONITOR)
        if current is not None and float(current) < self.best:  # NaN never counts as best
            self.best, self.epoch = float(current), epoch
            self.weights = self.model.get_weights()

    def restore(self, model: keras.Model) -> None:
        if self.weights is not None:
            model.set_weights(self.weights)


class EpochMeter(keras.callbacks.Callback):
    """Times the training part of each epoch and, off a terminal, prints one line per epoch."""

    def __init__(self, train_examples: int, *, print_lines: bool) -> None:
        super().__init__()
        self.train_examples = int(train_examples)
        self.print_lines = print_lines
        self.stage = "train"
        self.total_epochs = 0
        self.train_seconds = 0.0
        self.epochs_timed = 0
        self._epoch_start = 0.0
        self._train_end: float | None = None

    @property
    def images_per_second(self) -> float:
        if self.train_seconds <= 0:
            return 0.0
        return self.train_examples * self.epochs_timed / self.train_seconds

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._train_end = None

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Validation runs inside the epoch; keep it out of the training throughput.
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        train_time = (self._train_end or now) - self._epoch_start
        self.train_seconds += train_time
        self.epochs_timed += 1
        if not self.print_lines:
            return
        stage = "" if self.stage == "train" else f" [{self.stage.replace('_', '-')}]"
        metrics = format_metrics(logs or {})
        rate = self.train_examples / train_time if train_time > 0 else 0.0
        _emit(
            f"epoch {epoch + 1}/{self.total_epochs}{stage} - {metrics} - "
            f"{now - self._epoch_start:.1f}s - {rate:.0f} images/s"
        )
