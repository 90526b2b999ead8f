"""The champion, re-scored: the gate compares a candidate with the champion on the candidate's own
test rows, so the champion's predictions come from its published SavedModel (found through the
registry's `artifact_uri`, a path or URL inside the model repository every pod can read), never
from the metrics in its card."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ingot.errors import ModelError

if TYPE_CHECKING:
    from ingot.registry.store import Registry


@dataclass(frozen=True)
class Champion:
    """The registered champion: its version, where its SavedModel lives, and its card metrics."""

    name: str
    version: int | None
    artifact_uri: str | None
    metrics: dict | None

    def predict(self, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Probabilities [N, C] from the champion's `serving_default` signature on uint8 images.

        A champion whose SavedModel cannot be loaded or does not take these images is a
        ModelError naming the version and its location: the gate never silently falls back to
        the card's figures."""
        import tensorflow as tf

        from ingot.protocol.signatures import IMAGES_INPUT, PROBABILITIES, SERVING_DEFAULT

        where = f"champion {self.name} version {self.version} at {self.artifact_uri!r}"
        if not self.artifact_uri:
            raise ModelError(f"{where} has no artifact; the gate re-scores the champion on the test rows")
        try:
            serve = tf.saved_model.load(self.artifact_uri).signatures[SERVING_DEFAULT]
        except Exception as err:  # noqa: BLE001 - any load failure is the same user-facing problem
            raise ModelError(f"{where} cannot be loaded from the model repository: {err}") from None
        expected = tuple(serve.structured_input_signature[1][IMAGES_INPUT].shape[1:3])
        if tuple(images.shape[1:3]) != expected:
            images = tf.cast(tf.round(tf.image.resize(images, expected)), tf.uint8).numpy()
        out = [np.asarray(serve(**{IMAGES_INPUT: tf.constant(images[i:i + batch_size])})[PROBABILITIES])
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32)


def find_champion(registry: Registry, name: str) -> Champion | None:
    """The registered champion of `name`, or None when there is nothing to beat."""
    from ingot.errors import NotFoundError

    try:
        version = registry.champion(name)
    except NotFoundError:
        return None
    if version is None:
        return None
    return Champion(name=name, version=version.version, artifact_uri=version.artifact_uri,
                    metrics=registry.champion_metrics(name))
