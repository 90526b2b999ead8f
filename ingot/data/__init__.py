"""Data sources, validation report, deterministic splits and the tf.data input pipeline.

Public names are re-exported lazily so `import ingot.data` never imports TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "decode_and_resize": "ingot.data.preprocess",
    "AugmentationConfig": "ingot.data.preprocess",
    "FLIP_MODES": "ingot.data.preprocess",
    "resize_uint8": "ingot.data.preprocess",
    "LabelledImages": "ingot.data.dataset",
    "make_tf_dataset": "ingot.data.pipeline",
    "build_augmentation": "ingot.data.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ingot.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
