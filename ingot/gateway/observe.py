"""What the gateway records about each predicted row, from the decoded tensors (pure numpy).

`input_sha256` hashes the row's decoded input bytes (C order for numbers; the raw bytes for a
string input such as `serving_bytes`' encoded image), so one image sent as gRPC uint8
`tensor_content`, REST `instances` or REST columnar `inputs` has one hash: `hashlib.sha256(
image.tobytes())` of the uint8 array, or of the image file for `serving_bytes`. With several
inputs the rows' bytes are hashed in input-name order.

Pixel mean and standard deviation (population, on 0..255) are logged only where the gateway has
pixels: a uint8 image input [batch, H, W, C]. For `serving_bytes` the model server decodes the
image, so the gateway logs no statistics for it (they stay NULL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingot.evaluate.drift import input_statistics  # the one definition the drift baseline uses
from ingot.protocol.signatures import CLASS_IDS, CLASS_NAMES, PROBABILITIES


@dataclass(frozen=True, slots=True)
class RowFacts:
    input_sha256: str | None
    input_mean: float | None
    input_std: float | None


@dataclass(frozen=True, slots=True)
class RowPrediction:
    class_id: int | None
    class_name: str | None
    confidence: float | None


def batch_size(inputs: Mapping[str, np.ndarray]) -> int:
    """Rows in the request (the leading dimension; 1 for an unbatched scalar input)."""
    for array in inputs.values():
        return int(array.shape[0]) if array.ndim >= 1 else 1
    return 0


def input_facts(inputs: Mapping[str, np.ndarray]) -> list[RowFacts]:
    """Per-row hash and (for uint8 images) pixel statistics."""
    rows = batch_size(inputs)
    names = sorted(inputs)
    stats: tuple[np.ndarray, np.ndarray] | None = None
    if len(names) == 1:
        only = inputs[names[0]]
        if only.dtype == np.uint8 and only.ndim == 4 and only.shape[0] == rows and only.size:
            stats = input_statistics(only)
    facts = []
    for row, digest in enumerate(row_hashes(inputs, rows)):
        mean = float(stats[0][row]) if stats is not None else None
        std = float(stats[1][row]) if stats is not None else None
        facts.append(RowFacts(digest, mean, std))
    return facts


def row_hashes(inputs: Mapping[str, np.ndarray], rows: int | None = None) -> list[str]:
    """Each row's `input_sha256` alone (the prediction cache's key needs no pixel statistics)."""
    names = sorted(inputs)
    found = []
    for row in range(batch_size(inputs) if rows is None else rows):
        digest = hashlib.sha256()
        for name in names:
            digest.update(_row_bytes(inputs[name], row))
        found.append(digest.hexdigest())
    return found


def _row_bytes(array: np.ndarray, row: int) -> bytes | memoryview:
    value = array[row] if array.ndim >= 1 else array
    if array.dtype == object:
        items = value.ravel() if isinstance(value, np.ndarray) else [value]
        return b"".join(item if isinstance(item, bytes) else str(item).encode() for item in items)
    contiguous: Any = np.ascontiguousarray(value)  # no copy when already contiguous
    return memoryview(contiguous).cast("B")


def predictions(outputs: Mapping[str, np.ndarray] | None, rows: int) -> list[RowPrediction]:
    """Top-1 class id, name and probability per row, from whichever of the contract's outputs came
    back (a gRPC caller may ask for only some); None where an output is missing."""
    outputs = outputs or {}
    probabilities = outputs.get(PROBABILITIES)
    class_ids = outputs.get(CLASS_IDS)
    class_names = outputs.get(CLASS_NAMES)
    result = []
    for row in range(rows):
        class_id: int | None = None
        confidence: float | None = None
        name: str | None = None
        if class_ids is not None and class_ids.ndim == 1 and row < len(class_ids):
            class_id = int(class_ids[row])
        if probabilities is not None and probabilities.ndim == 2 and row < len(probabilities) \
                and probabilities.shape[1]:
            scores = probabilities[row]
            if class_id is None:
                class_id = int(np.argmax(scores))
            if 0 <= class_id < scores.shape[0]:
                confidence = float(scores[class_id])
        if class_names is not None and class_names.ndim == 1 and row < len(class_names):
            raw = class_names[row]
            name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        result.append(RowPrediction(class_id, name, confidence))
    return result


def class_count(outputs: Mapping[str, np.ndarray] | None) -> int | None:
    """Number of classes, from the probabilities' width."""
    probabilities = (outputs or {}).get(PROBABILITIES)
    if probabilities is not None and probabilities.ndim == 2:
        return int(probabilities.shape[1])
    return None
