"""The in-memory description of a labelled image set, independent of where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingot.errors import DataError


@dataclass
class LabelledImages:
    """Images and integer labels over `class_names`.

    File sources carry `paths` (decoded lazily by tf.data, so large folders never sit in memory
    twice); array sources such as CIFAR-10 carry `images` (uint8 N,H,W,3). Exactly one is set.
    `sha256` optionally holds one digest per file, filled by the scan so the split hash does
    not read every file again.
    """

    class_names: list[str]
    labels: np.ndarray
    paths: list[str] | None = None
    images: np.ndarray | None = None
    sha256: list[str] | None = field(default=None, repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if (self.paths is None) == (self.images is None):
            raise DataError("LabelledImages needs exactly one of paths (files) or images (an array)")
        if self.paths is not None:
            self.paths = [str(p) for p in self.paths]
            count = len(self.paths)
        else:
            self.images = np.asarray(self.images)
            if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
                raise DataError(
                    f"images must be uint8 with shape (N, H, W, 3); got {self.images.dtype} "
                    f"{self.images.shape}"
                )
            count = int(self.images.shape[0])
        if len(self.labels) != count:
            raise DataError(f"{count} images but {len(self.labels)} labels; expected one label per image")
        if self.sha256 is not None and len(self.sha256) != count:
            raise DataError(f"{count} images but {len(self.sha256)} file digests")
        if count and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataError(
                f"labels must lie in 0..{len(self.class_names) - 1} for classes {self.class_names}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        """Images per class name, every class listed (zero included), in class order."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(counts[i]) for i, name in enumerate(self.class_names)}

    def subset(self, indices: Any) -> LabelledImages:
        """The images at `indices`, in that order, with the same class names and source."""
        indices = np.asarray(indices, dtype=np.int64)
        return LabelledImages(
            class_names=list(self.class_names),
            labels=self.labels[indices],
            paths=[self.paths[i] for i in indices] if self.paths is not None else None,
            images=self.images[indices] if self.images is not None else None,
            sha256=[self.sha256[i] for i in indices] if self.sha256 is not None else None,
            source=self.source,
        )
