"""Image classifier architectures by name; normalization always lives inside the model.

`ARCHITECTURES` and the size checks are plain Python; the builders import Keras, so they are
re-exported lazily and `import ingot.models` stays cheap.
"""

from __future__ import annotations

from ingot._lazy import lazy_exports
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
}

__all__ = sorted(
    [*_LAZY, "ARCHITECTURES", "CNN", "TRANSFER_ARCHITECTURES", "check_image_size", "minimum_image_size"]
)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
