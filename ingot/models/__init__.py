"""Image classifier architectures by name; normalization always lives inside the model.

`ARCHITECTURES` and the size checks are plain Python; the builders import Keras, so they are
re-exported lazily and `import ingot.models` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from ingot.models.catalog import (
    ARCHITECTURES,
    CNN,
    TRANSFER_ARCHITECTURES,
    check_image_size,
    minimum_image_size,
)

_LAZY = {
    "build_model": "ingot.models.builders",
    "unfreeze_top_layers": "ingot.models.builders",
    "backbone_of": "ingot.models.builders",
    "INPUT_NAME": "ingot.models.builders",
    "OUTPUT_NAME": "ingot.models.builders",
}

__all__ = sorted(
    [*_LAZY, "ARCHITECTURES", "CNN", "TRANSFER_ARCHITECTURES", "check_image_size", "minimum_image_size"]
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ingot.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
