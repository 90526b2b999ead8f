"""A small production world for dataset-build tests: a base Dataset artifact, logged and labelled
rows in a real inference log, and their inputs in a capture store."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from ingot import storage
from ingot.capture import layout
from ingot.inference_log.records import LogRecord
from ingot.inference_log.schema import feedback_labels
from ingot.inference_log.store import InferenceLogStore

CLASSES = ["red", "green", "blue"]
MODEL = "colours"
START = datetime(2026, 11, 1, tzinfo=UTC)


def colour(label: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(20, 70, size=(8, 8, 3))
    image[:, :, label] += 150
    return image.astype(np.uint8)


def make_base(directory: Path, per_class: int = 10) -> str:
    from ingot.data.dataset import LabelledImages
    from ingot.data.records import write_dataset_artifact
    from ingot.data.splits import split_dataset

    labels = [i % 3 for i in range(per_class * 3)]
    images = np.stack([colour(label, 1000 + i) for i, label in enumerate(labels)])
    data = LabelledImages(class_names=list(CLASSES), labels=np.array(labels), images=images, source="test:colours")
    write_dataset_artifact(split_dataset(data, validation_fraction=0.2, test_fraction=0.2, seed=0), str(directory))
    return str(directory)


@dataclass
class World:
    log: InferenceLogStore
    capture_url: str
    shas: list[str] = field(default_factory=list)
    times: dict[str, datetime] = field(default_factory=dict)
    count: int = 0

    def serve(self, image: np.ndarray, labels: list[str], *, minute: int, captured: bool = True) -> str:
        """Log one served row per label (the same input sent again), label each, store the input."""
        sha = hashlib.sha256(image.tobytes()).hexdigest()
        records, rows = [], []
        for label in labels:
            self.count += 1
            request_id = f"req-{self.count}"
            ts = START + timedelta(minutes=minute)
            records.append(LogRecord(
                request_id=request_id, row=0, ts=ts, model=MODEL, experiment=None, variant="champion",
                assignment="weight", model_version=1, signature="serving_default", input_sha256=sha,
                predicted_class_id=0, predicted_class_name=CLASSES[0], confidence=0.9, input_mean=None,
                input_std=None, latency_ms=1.0, status="OK", captured=captured))
            rows.append({"request_id": request_id, "row": 0, "label_id": CLASSES.index(label) if label in CLASSES
                         else 99, "label_name": label, "received_at": ts, "model": MODEL, "experiment": None,
                         "variant": "champion", "model_version": 1, "correct": label == CLASSES[0]})
        self.log.write(records)
        with self.log.engine.begin() as conn:
            conn.execute(insert(feedback_labels), rows)
        if captured:
            storage.write_once(layout.location(self.capture_url, MODEL, sha, "png"), layout.encode_png(image))
        self.shas.append(sha)
        self.times[sha] = START + timedelta(minutes=minute)
        return sha
