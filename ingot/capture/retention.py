"""Capture retention: inputs older than `retention_days` go, then the oldest until the model's
inputs fit `max_bytes`."""

from __future__ import annotations

import time

from ingot import storage


def sweep(base: str, model: str, *, max_bytes: int, retention_days: float, now: float | None = None) -> list[str]:
    """Remove what the policy no longer keeps; returns the removed relative paths, oldest first."""
    root = storage.join(base, model)
    entries = sorted(storage.list_files_with_times(root), key=lambda e: (e[2], e[0]))
    cutoff = (time.time() if now is None else now) - retention_days * 86400.0
    total = sum(size for _, size, _ in entries)
    removed: list[str] = []
    for rel, size, mtime in entries:
        if mtime >= cutoff and total <= max_bytes:
            break
        storage.remove(storage.join(root, rel))
        removed.append(rel)
        total -= size
    return removed
