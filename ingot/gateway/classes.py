"""The class names of each served model version, for checking feedback labels.

TF Serving's metadata carries signatures, not class names, so the gateway gets them from the
model card (`assets.extra/model_card.json`) when it can read the model repository
(`--model_repository`; a read-only mount in a cluster), and otherwise learns them from the
answers it forwards (`class_ids` with `class_names`, and the class count from the width of
`probabilities`): a version's names are known once every class has been predicted at least once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from ingot.gateway.observe import CLASS_IDS, CLASS_NAMES, class_count

log = logging.getLogger(__name__)


class ClassCatalog:
    """(model, version) -> class names in id order, or None while unknown. Thread-safe enough:
    entries are only added, and a dict assignment is atomic."""

    def __init__(self, model_repository: str | None = None) -> None:
        self._repository = model_repository
        self._cards: dict[tuple[str, int], list[str] | None] = {}
        self._learned: dict[tuple[str, int], dict[int, str]] = {}
        self._counts: dict[tuple[str, int], int] = {}

    def __call__(self, model: str, version: int | None) -> Sequence[str] | None:
        if version is None:
            return None
        key = (model, version)
        names = self._from_card(key)
        if names:
            return names
        count = self._counts.get(key)
        learned = self._learned.get(key, {})
        if count and all(i in learned for i in range(count)):
            return [learned[i] for i in range(count)]
        return None

    def by_id(self, model: str, version: int | None) -> Sequence[str] | None:
        """The class names where known; otherwise, for labels given as class ids, one entry per
        class (the names learned so far, the id as text for the rest), so a label by id needs only
        the class count (the width of `probabilities` in any forwarded answer)."""
        names = self(model, version)
        if names or version is None:
            return names
        key = (model, version)
        count = self._counts.get(key)
        if not count:
            return None
        learned = self._learned.get(key, {})
        return [learned.get(i, str(i)) for i in range(count)]

    def observe(self, model: str, version: int | None, outputs: Mapping[str, np.ndarray] | None) -> None:
        """Learn (id, name) pairs and the class count from one forwarded answer."""
        if version is None or not outputs:
            return
        key = (model, version)
        count = class_count(outputs)
        if count:
            self._counts[key] = count
        ids, names = outputs.get(CLASS_IDS), outputs.get(CLASS_NAMES)
        if ids is None or names is None or ids.ndim != 1 or names.shape != ids.shape:
            return
        learned = self._learned.setdefault(key, {})
        if len(learned) >= (count or 1 << 16):
            return
        for class_id, raw in zip(ids.tolist(), names.tolist(), strict=True):
            if class_id not in learned:
                learned[int(class_id)] = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    def _from_card(self, key: tuple[str, int]) -> list[str] | None:
        if self._repository is None:
            return None
        if key in self._cards and self._cards[key] is not None:
            return self._cards[key]
        from ingot import repository
        from ingot.errors import IngotError

        try:
            card = repository.read_model_card(repository.version_path(self._repository, key[0], key[1]))
        except (IngotError, OSError) as err:
            log.debug("no model card for %s version %s: %s", key[0], key[1], err)
            return None
        names = card.get("class_names")
        found = [str(name) for name in names] if isinstance(names, list) and names else None
        self._cards[key] = found
        return found
