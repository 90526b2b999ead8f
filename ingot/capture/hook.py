"""The gateway's one call into capture: hand the sampled rows' inputs to the writer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ingot.capture import layout


def offer_captures(writer: Any, table: Any, inputs: Mapping[str, np.ndarray] | None, facts: Sequence[Any],
                   rows: set[int]) -> set[int]:
    """Offer each sampled row's input under its `input_sha256`; returns the rows accepted (queued
    or already stored), which the log marks `captured`. Shapes capture cannot store (several
    inputs, float tensors) are skipped."""
    if not rows or inputs is None or table.capture is None or not layout.capturable(inputs):
        return set()
    accepted = set()
    for row in sorted(rows):
        fact = facts[row] if row < len(facts) else None
        if fact is None or fact.input_sha256 is None:
            continue
        payload, extension = layout.row_payload(inputs, row)
        if writer.offer(table.model, table.capture, fact.input_sha256, payload, extension):
            accepted.add(row)
    return accepted
