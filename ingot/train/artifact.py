"""The Model artifact: the best-epoch Keras model and its training summary, written by the train
step (in a pipeline pod, `ingot train`, or a multi-worker chief) and read back by later steps.

The file names are the format: a TFJob's chief writes them and the train step collects them.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingot import storage
from ingot.errors import DataError

if TYPE_CHECKING:
    import keras

    from ingot.data.records import DatasetArtifact
    from ingot.data.splits import DatasetSplits
    from ingot.train.config import TrainConfig

MODEL_FILE = "model.keras"
TRAINING_JSON = "training.json"


@dataclass
class TrainOutput:
    model: keras.Model  # at its best validation epoch
    summary: dict[str, Any]  # TrainResult.to_dict() plus the config, class names and data hash


def fit_and_save(
    splits: DatasetArtifact | DatasetSplits, config: TrainConfig, output_dir: str | os.PathLike[str], *,
    callbacks: Any = (), strategy: Any = None,
) -> TrainOutput:
    """Train per the config on `splits` (a DatasetArtifact, or in-memory DatasetSplits) and save
    the best-epoch Keras model plus its training summary (the Model artifact). `strategy`: a
    multi-worker worker's, made at process start (see ingot.train.distributed)."""
    from ingot.train.trainer import train_model

    result = train_model(config, splits, callbacks=callbacks, strategy=strategy)
    summary = {
        **result.to_dict(),
        "config": config.to_dict(),
        "class_names": list(splits.class_names),
        "data_hash": splits.content_hash,
    }
    save(result.model, summary, output_dir)
    return TrainOutput(model=result.model, summary=summary)


def save(model: keras.Model, summary: dict[str, Any], output_dir: str | os.PathLike[str]) -> None:
    """Write the Model artifact into `output_dir` (a local folder, or gs:// for a TFJob's chief:
    Keras saves locally, then the files are copied)."""
    location = os.fspath(output_dir)
    if storage.is_remote(location):
        import tensorflow as tf

        with tempfile.TemporaryDirectory(prefix="ingot-model-") as scratch:
            save(model, summary, scratch)
            storage.makedirs(location)
            for name in (MODEL_FILE, TRAINING_JSON):  # overwrite: a restarted chief writes again
                tf.io.gfile.copy(os.path.join(scratch, name), storage.join(location, name), overwrite=True)
        return
    directory = Path(location)
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / MODEL_FILE)
    storage.atomic_write(directory / TRAINING_JSON,
                         json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n")


def load_trained(directory: str | os.PathLike[str]) -> TrainOutput:
    """Reload a train step's output (in a later pipeline step)."""
    import keras

    directory = Path(directory)
    if not (directory / MODEL_FILE).is_file():
        raise DataError(f"{directory} has no {MODEL_FILE}; expected the Model artifact written by the train step")
    model = keras.models.load_model(directory / MODEL_FILE)
    summary = json.loads((directory / TRAINING_JSON).read_text(encoding="utf-8"))
    return TrainOutput(model=model, summary=summary)
