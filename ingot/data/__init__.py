"""Data sources, validation report, deterministic splits and the tf.data input pipeline.

Public names are re-exported lazily so `import ingot.data` never imports TensorFlow.
"""

from __future__ import annotations

from ingot._lazy import lazy_exports

_EXPORTS = {
    "decode_and_resize": "ingot.data.preprocess",
    "AugmentationConfig": "ingot.data.preprocess",
    "FLIP_MODES": "ingot.data.preprocess",
    "resize_uint8": "ingot.data.preprocess",
    "LabelledImages": "ingot.data.dataset",
    "make_tf_dataset": "ingot.data.pipeline",
    "build_augmentation": "ingot.data.pipeline",
    "DataReport": "ingot.data.report",
    "SkippedFile": "ingot.data.report",
    "load_image_folder": "ingot.data.sources",
    "load_cifar10": "ingot.data.sources",
    "load_keras_cifar10": "ingot.data.sources",
    "ensure_digits_folder": "ingot.data.sources",
    "load_dataset": "ingot.data.sources",
    "check_class_counts": "ingot.data.sources",
    "DEFAULT_MIN_IMAGES_PER_CLASS": "ingot.data.sources",
    "CIFAR10_CLASS_NAMES": "ingot.data.sources",
    "IMAGE_EXTENSIONS": "ingot.data.sources",
    "DatasetSplits": "ingot.data.splits",
    "split_dataset": "ingot.data.splits",
    "DatasetArtifact": "ingot.data.records",
    "RecordSplit": "ingot.data.records",
    "write_dataset_artifact": "ingot.data.records",
    "open_dataset_artifact": "ingot.data.records",
    "DEFAULT_SHARD_BYTES": "ingot.data.records",
    "compute_content_hash": "ingot.data.splits",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
