"""Training: the typed recipe (`TrainConfig`) and the fit loop (`train_model`).

`TrainConfig` is plain Python (the CLI and pipeline compiler read it without TensorFlow); the
trainer imports Keras and is re-exported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from ingot.train.config import TrainConfig, valid_keys

_LAZY = {
    "train_model": "ingot.train.trainer",
    "fit_classifier": "ingot.train.trainer",
    "TrainResult": "ingot.train.trainer",
    "detect_hardware": "ingot.train.trainer",
}

__all__ = sorted([*_LAZY, "TrainConfig", "valid_keys"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ingot.train' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
