"""Export a Keras classifier to the SavedModel serving contract (docs/architecture.md, section 3) and publish
it into a TF Serving model repository.

Public names are re-exported lazily so `import ingot.export` never imports TensorFlow.
"""

from __future__ import annotations

from ingot._lazy import lazy_exports

_EXPORTS = {
    "export_saved_model": "ingot.export.saved_model",
    "build_model_card": "ingot.export.saved_model",
    "warmup_requests": "ingot.export.saved_model",
    "SERVING_DEFAULT": "ingot.export.saved_model",
    "SERVING_BYTES": "ingot.export.saved_model",
    "OUTPUT_KEYS": "ingot.export.saved_model",
    "REQUIRED_CARD_KEYS": "ingot.export.saved_model",
    "WARMUP_FILE": "ingot.export.saved_model",
    "MODEL_CARD_FILE": "ingot.export.saved_model",
    "publish": "ingot.export.publishing",
    "PublishedVersion": "ingot.export.publishing",
    "validate_model_name": "ingot.export.publishing",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
