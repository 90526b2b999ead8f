"""Drift seen in the model's own embeddings: an MMD² two-sample test (RBF kernel, median-heuristic
bandwidth, permutation p-value) between the card's reference sample of validation embeddings and a
window of captured inputs embedded by the model server's `serving_embedding` signature.

numpy only, so the monitor needs no TensorFlow. The permutation test is vectorised: one weight
matrix of shape (permutations, n + m) against the pooled kernel matrix. With the default 1,000
permutations the smallest p-value is 1/1001, fine enough to resolve the Bonferroni threshold
(0.01 / m for the monitor's m tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ingot.errors import ConfigError

if TYPE_CHECKING:
    from ingot.client import Client

DEFAULT_PERMUTATIONS = 1000
DEFAULT_MAX_ROWS = 1000     # each side is subsampled (seeded) to at most this many rows
DEFAULT_SEED = 0
IMAGE_EXTENSIONS = ("png", "jpg", "gif", "bmp", "webp")  # what the store holds that Pillow decodes ("bin" is not)


@dataclass(frozen=True)
class MMDResult:
    statistic: float        # biased MMD² (V-statistic) of the observed split
    p_value: float          # (1 + #permuted >= observed) / (1 + permutations)
    bandwidth: float        # the RBF kernel's sigma (median heuristic on the pooled sample)
    permutations: int
    reference_rows: int
    window_rows: int


def _subsample(values: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if values.shape[0] <= limit:
        return values
    return values[np.sort(rng.choice(values.shape[0], size=limit, replace=False))]


def mmd_test(reference: np.ndarray, window: np.ndarray, *, permutations: int = DEFAULT_PERMUTATIONS,
             seed: int = DEFAULT_SEED, max_rows: int = DEFAULT_MAX_ROWS) -> MMDResult:
    """Two-sample MMD² test of `window` against `reference` (rows are embeddings)."""
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(window, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ConfigError(f"embeddings must be two [rows, d] arrays of one d, got {x.shape} and {y.shape}")
    if min(x.shape[0], y.shape[0]) < 2 or permutations < 1:
        raise ConfigError("the MMD test needs at least 2 rows on each side and 1 permutation")
    rng = np.random.default_rng(seed)
    x, y = _subsample(x, max_rows, rng), _subsample(y, max_rows, rng)
    n, m = x.shape[0], y.shape[0]
    z = np.vstack([x, y])
    squared = np.einsum("ij,ij->i", z, z)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * (z @ z.T), 0.0)
    upper = distances[np.triu_indices(n + m, k=1)]
    median = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    kernel = np.exp(-distances / median).astype(np.float32)  # exp(-d²/(2σ²)) with 2σ² = median d²
    # Row 0: the observed split; rows 1..P: seeded permutations of the pooled labels.
    labels = np.empty((permutations + 1, n + m), dtype=bool)
    labels[0] = np.arange(n + m) < n
    base = labels[0].copy()
    for row in range(1, permutations + 1):
        labels[row] = rng.permutation(base)
    weights = np.where(labels, np.float32(1.0 / n), np.float32(-1.0 / m))
    statistics = np.einsum("pi,pi->p", weights @ kernel, weights)  # a^T K a for each weight row a
    observed = float(statistics[0])
    p_value = (1.0 + float(np.sum(statistics[1:] >= observed - 1e-7))) / (1.0 + permutations)
    return MMDResult(observed, p_value, float(np.sqrt(median / 2.0)), permutations, n, m)


@dataclass(frozen=True)
class Captured:
    """One captured input: its encoded bytes and when the capture store received it."""

    data: bytes
    stored: float  # Unix seconds


class CapturedInputs(Protocol):
    """Where the monitor gets a window's inputs: the gateway's input capture (stored raw bytes)."""

    def timed(self, model: str, since: datetime | None, until: datetime | None, limit: int) -> list[Captured]: ...


class CaptureStoreInputs:
    """The gateway's capture store (a directory, `s3://` or `gs://`; docs/capture.md), read through
    `ingot.capture.reader`, the one implementation of its layout. A window is the decodable images
    stored between `since` and `until`, the newest `limit` of them."""

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)

    def timed(self, model: str, since: datetime | None, until: datetime | None, limit: int) -> list[Captured]:
        from ingot.capture.reader import read, stored_inputs

        low = since.timestamp() if since is not None else float("-inf")
        high = until.timestamp() if until is not None else float("inf")
        entries = [entry for entry in stored_inputs(self.url, model)
                   if entry.extension in IMAGE_EXTENSIONS and low <= entry.modified < high]
        newest = sorted(entries, key=lambda entry: (entry.modified, entry.sha256), reverse=True)[:limit]
        return [Captured(read(entry), entry.modified) for entry in newest]

    def sample(self, model: str, since: datetime | None, until: datetime | None, limit: int) -> list[bytes]:
        """The window's bytes, newest first."""
        return [found.data for found in self.timed(model, since, until, limit)]


Embedder = Callable[[Sequence[bytes]], np.ndarray]
"""Images (encoded bytes) to embeddings [rows, d]; the CLI hands in one that decodes the images
and calls the model server's `serving_embedding` signature through `ingot.client`."""
EmbedderFor = Callable[[int], Embedder]
"""The Embedder for a model version (the champion's, whose card holds the reference sample)."""


@dataclass(frozen=True)
class EmbeddingWindow:
    """The two samples the embedding check compares."""

    reference: np.ndarray
    window: np.ndarray
    permutations: int = DEFAULT_PERMUTATIONS
    seed: int = DEFAULT_SEED
    times: np.ndarray | None = None  # when each window row was captured (Unix seconds): the report's history


def embedding_window(reference: np.ndarray | None, inputs: CapturedInputs | None, embed: Embedder, model: str,
                     since: datetime | None, until: datetime | None,
                     limit: int = DEFAULT_MAX_ROWS) -> EmbeddingWindow | str:
    """The window's embeddings, or the note saying why the embedding check cannot run."""
    if reference is None:
        return "embedding_mmd: the model card has no embedding reference sample"
    if inputs is None:
        return "embedding_mmd: no captured inputs configured, embedding drift not tested"
    found = inputs.timed(model, since, until, limit)
    if not found:
        return "embedding_mmd: no captured inputs in the window, embedding drift not tested"
    return EmbeddingWindow(np.asarray(reference), np.asarray(embed([item.data for item in found])),
                           times=np.asarray([item.stored for item in found], dtype=np.float64))


def decode_images(images: Sequence[bytes], image_size: tuple[int, int]) -> np.ndarray:
    """Encoded images to uint8 [rows, H, W, 3] at the model's input size (Pillow, bilinear), so the
    monitor feeds `serving_embedding` without TensorFlow."""
    import io

    from PIL import Image

    height, width = image_size
    decoded = np.empty((len(images), height, width, 3), dtype=np.uint8)
    for row, payload in enumerate(images):
        with Image.open(io.BytesIO(payload)) as image:
            decoded[row] = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
    return decoded


def server_embedder(client: Client, model: str, image_size: tuple[int, int], *, version: int | None = None,
                    batch: int = 64) -> Embedder:
    """An Embedder calling the model server's `serving_embedding` signature through an
    `ingot.client.Client` (REST or gRPC), `batch` images a request."""
    from ingot.protocol.signatures import EMBEDDING, SERVING_EMBEDDING

    def embed(images: Sequence[bytes]) -> np.ndarray:
        pixels = decode_images(images, image_size)
        parts = [np.asarray(client.predict(pixels[start:start + batch], model=model,
                                           version=version, signature_name=SERVING_EMBEDDING)[EMBEDDING],
                            dtype=np.float32)
                 for start in range(0, len(pixels), batch)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    return embed


def load_reference(artifact_uri: str, card: dict) -> np.ndarray | None:
    """The champion's reference embeddings (`embedding_reference` in its card), or None for a
    model exported before the embedding signature."""
    import io

    from ingot.repository import ASSETS_EXTRA
    from ingot.storage import exists, join, open_file

    entry = card.get("embedding_reference")
    if not isinstance(entry, dict) or not entry.get("file"):
        return None
    path = join(artifact_uri, ASSETS_EXTRA, str(entry["file"]))
    if not exists(path):
        return None
    with open_file(path, "rb") as handle:
        return np.load(io.BytesIO(handle.read()), allow_pickle=False)


def lazy_server_embedder(connect: Callable[[], Client], model: str, version: int | None = None) -> Embedder:
    """A server embedder for `version` (the champion's: its reference sample is in its card) that
    connects, and reads the input size from the signature's metadata, only when there are captured
    images to embed."""

    def embed(images: Sequence[bytes]) -> np.ndarray:
        from ingot.protocol.signatures import IMAGES_INPUT, SERVING_EMBEDDING

        with connect() as client:
            signature = client.metadata(model, version=version)["metadata"]["signature_def"]["signature_def"][SERVING_EMBEDDING]
            dims = signature["inputs"][IMAGES_INPUT]["tensor_shape"]["dim"]
            size = (int(dims[1]["size"]), int(dims[2]["size"]))
            return server_embedder(client, model, size, version=version)(images)

    return embed


def project_2d(reference: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both samples on the first two principal axes of the pooled, centred sample (numpy SVD)."""
    x, y = np.asarray(reference, dtype=np.float64), np.asarray(window, dtype=np.float64)
    pooled = np.vstack([x, y])
    centre = pooled.mean(axis=0)
    _, _, axes = np.linalg.svd(pooled - centre, full_matrices=False)
    basis = axes[:2].T
    if basis.shape[1] < 2:
        basis = np.hstack([basis, np.zeros((basis.shape[0], 2 - basis.shape[1]))])
    return (x - centre) @ basis, (y - centre) @ basis


@dataclass(frozen=True)
class HistoryPoint:
    """The embedding statistics of one time slice of the window against the reference."""

    until: float            # the newest capture time in the slice (Unix seconds)
    rows: int
    mmd2: float             # biased MMD² (no permutations: the plot shows the statistic, not a verdict)
    auc: float              # the domain classifier's held-out AUC


def embedding_history(samples: EmbeddingWindow, *, slices: int = 8, min_rows: int = 50) -> list[HistoryPoint]:
    """The window cut by capture time into up to `slices` equal-count slices of at least
    `min_rows` rows, each compared with the reference: the report's statistic-over-time plot,
    computed from the window the check already embedded (the monitor keeps no check history)."""
    from ingot.monitor.domain_classifier import domain_classifier_test

    if samples.times is None or len(samples.times) != samples.window.shape[0]:
        return []
    count = min(slices, samples.window.shape[0] // min_rows)
    if count < 2:
        return []
    order = np.argsort(samples.times, kind="stable")
    points = []
    for part in np.array_split(order, count):
        rows = samples.window[part]
        mmd = mmd_test(samples.reference, rows, permutations=1, seed=samples.seed)
        auc = domain_classifier_test(samples.reference, rows, seed=samples.seed).auc
        points.append(HistoryPoint(float(samples.times[part].max()), int(part.size), mmd.statistic, auc))
    return points
