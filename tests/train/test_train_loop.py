"""train_model on tiny synthetic data: it learns, keeps the best epoch, writes checkpoints, logs
one line per epoch off a terminal, runs the fine-tune stage, and restores global state."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ingot.data.dataset import LabelledImages
from ingot.data.splits import split_dataset
from ingot.errors import DataError
from ingot.train.config import TrainConfig
from ingot.train.trainer import train_model

# Keras's TF backend converts tensors with np.array(x, copy=False) fallbacks (NumPy 2 notice).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[2]
SIZE = 24
CLASSES = ["dark", "mid", "bright"]


def _separable(n: int, seed: int) -> LabelledImages:
    """Three classes told apart by overall brightness, with per-pixel noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    levels = np.array([40, 128, 215])[labels]
    images = levels[:, None, None, None] + rng.integers(-35, 36, size=(n, SIZE, SIZE, 3))
    return LabelledImages(class_names=CLASSES, labels=labels, images=images.clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def splits():
    return split_dataset(_separable(360, seed=1), validation_fraction=0.25, test_fraction=0.1, seed=0)


@pytest.fixture(scope="module")
def small_splits():
    """For tests about mechanics rather than learning: less data, faster epochs."""
    return split_dataset(_separable(72, seed=2), validation_fraction=0.25, test_fraction=0.1, seed=0)


def _config(**overrides) -> TrainConfig:
    values = {"image_size": (SIZE, SIZE), "batch_size": 16, "epochs": 3, "learning_rate": 1e-3, "verbose": "lines"}
    return TrainConfig(**{**values, **overrides})


def _validation(splits, config):
    from ingot.data.pipeline import make_tf_dataset

    return make_tf_dataset(
        splits.validation, image_size=config.image_size, batch_size=config.batch_size, training=False, seed=0
    )


def test_learns_reports_hardware_and_logs_one_line_per_epoch_off_a_terminal(splits, capsys):
    import tensorflow as tf

    config = _config(verbose="auto")  # pytest's captured stdout is not a terminal
    result = train_model(config, splits)
    out = capsys.readouterr().out

    history = result.history
    assert result.epochs_run == 3 and len(history["loss"]) == 3
    assert history["loss"][-1] < history["loss"][0]
    assert history["accuracy"][-1] > history["accuracy"][0]
    assert max(history["val_accuracy"]) >= 0.9
    assert result.best_epoch == int(np.argmin(history["val_loss"])) + 1
    assert result.best_metrics["val_loss"] == min(history["val_loss"])

    hardware = result.hardware
    assert hardware["gpus"] == [] and hardware["gpu_count"] == len(tf.config.list_physical_devices("GPU"))
    assert hardware["tensorflow_version"] == tf.__version__
    assert hardware["mixed_precision"] is False  # "auto" on a CPU-only machine
    assert hardware["strategy"] == "default" and hardware["replicas"] == 1
    assert hardware["cpu_count"] >= 1
    assert result.duration_s > 0 and result.images_per_second > 0
    assert result.stages == [{"name": "train", "learning_rate": 1e-3, "epochs_run": 3}]

    lines = out.strip().splitlines()
    assert lines[0].startswith("hardware: ") and "mixed precision off" in lines[0]
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 3
    for number, line in enumerate(epoch_lines, start=1):
        assert re.fullmatch(
            rf"epoch {number}/3 - loss [\d.]+ - accuracy [\d.]+ - val_loss [\d.]+ - val_accuracy [\d.]+ "
            r"- [\d.]+s - \d+ images/s",
            line,
        ), line
    assert lines[-1].startswith(f"best epoch {result.best_epoch}/3 - ")
    assert "━" not in out and "step" not in out  # no Keras progress bar


def test_progress_bar_on_a_terminal_and_lines_otherwise(monkeypatch):
    from ingot.train import trainer

    monkeypatch.setattr(trainer, "_stdout_is_terminal", lambda: True)
    assert trainer._output_mode("auto") == (True, False)
    monkeypatch.setattr(trainer, "_stdout_is_terminal", lambda: False)
    assert trainer._output_mode("auto") == (False, True)
    assert trainer._output_mode("bar") == (True, False)
    assert trainer._output_mode("quiet") == (False, False)


def _sabotage_from(first_bad_epoch: int):
    """A callback that, from `first_bad_epoch` (0-based) on, scrambles the classifier head before
    the epoch trains, so every later epoch validates far worse than the best one."""
    import keras

    class Sabotage(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch >= first_bad_epoch:
                head = self.model.get_layer("probabilities")
                rng = np.random.default_rng(epoch)
                head.set_weights([rng.normal(0, 20, w.shape).astype("float32") for w in head.get_weights()])

    return Sabotage()


def test_early_stopping_returns_the_best_epoch_not_the_last(splits, tmp_path):
    import keras

    config = _config(epochs=10, early_stopping_patience=1, checkpoint_dir=str(tmp_path / "ck"), verbose="quiet")
    result = train_model(config, splits, callbacks=[_sabotage_from(2)])
    val_loss = result.history["val_loss"]

    assert result.epochs_run == 3 < config.epochs  # stopped after one epoch without improvement
    assert result.best_epoch in (1, 2) and result.best_epoch == int(np.argmin(val_loss)) + 1
    assert val_loss[-1] > 2 * min(val_loss)

    validation = _validation(splits, config)
    loss, _ = result.model.evaluate(validation, verbose=0)
    assert loss == pytest.approx(val_loss[result.best_epoch - 1], rel=1e-4)
    assert loss != pytest.approx(val_loss[-1], rel=1e-2)

    best = keras.models.load_model(tmp_path / "ck" / "best.keras")
    last = keras.models.load_model(tmp_path / "ck" / "last.keras")
    assert best.evaluate(validation, verbose=0)[0] == pytest.approx(min(val_loss), rel=1e-4)
    assert last.evaluate(validation, verbose=0)[0] == pytest.approx(val_loss[-1], rel=1e-4)


def test_transfer_recipe_runs_the_fine_tune_stage_at_a_tenth_of_the_learning_rate(small_splits, capsys):
    import keras

    from ingot.models.builders import backbone_of

    config = TrainConfig.from_yaml(REPO / "configs" / "flowers-mobilenet.yaml").with_overrides(
        ["weights=none", f"image_size={SIZE + 8}", "epochs=1", "fine_tune_epochs=1", "fine_tune_layers=12",
         "batch_size=32", "verbose=lines", "min_images_per_class=1"]
    )
    result = train_model(config, small_splits)

    assert [stage["name"] for stage in result.stages] == ["train", "fine_tune"]
    assert result.stages[1]["learning_rate"] == pytest.approx(config.learning_rate / 10)
    assert result.stages[1]["unfrozen_layers"] > 0
    assert result.epochs_run == 2 and len(result.history["val_loss"]) == 2
    assert float(result.model.optimizer.learning_rate) == pytest.approx(config.learning_rate / 10)
    base = backbone_of(result.model)
    assert any(layer.trainable for layer in base.layers[-12:])
    assert not any(
        layer.trainable for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    out = capsys.readouterr().out
    assert "epoch 1/1 - " in out and "epoch 2/2 [fine-tune] - " in out
    assert "fine-tune: unfroze" in out


def test_mixed_precision_on_request_and_the_global_policy_is_restored(small_splits):
    import keras

    before = keras.mixed_precision.global_policy().name
    result = train_model(_config(epochs=1, mixed_precision=True, verbose="quiet"), small_splits)
    assert keras.mixed_precision.global_policy().name == before
    assert result.hardware["mixed_precision"] is True
    assert result.model.get_layer("conv1").compute_dtype == "float16"
    # Keras wraps the optimizer for loss scaling, so float16 gradients do not underflow.
    assert isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer)
    probs = result.model.predict(small_splits.validation.images[:4].astype("float32"), verbose=0)
    assert probs.dtype == np.float32


def test_mixed_precision_auto_follows_the_gpu():
    from ingot.train.trainer import use_mixed_precision

    assert use_mixed_precision("auto", gpu_count=0) is False
    assert use_mixed_precision("auto", gpu_count=1) is True
    assert use_mixed_precision(False, gpu_count=2) is False
    assert use_mixed_precision(True, gpu_count=0) is True


def test_an_empty_validation_split_is_a_data_error(splits):
    from dataclasses import replace

    empty = splits.validation.subset([])
    with pytest.raises(DataError, match="non-empty train and validation splits; got .* 0 validation"):
        train_model(_config(), replace(splits, validation=empty))
