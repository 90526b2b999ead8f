"""The typed evaluation record: everything known about one evaluated model, under one set of keys.

The evaluate step writes it; the model card (inside the exported SavedModel), the registry
record (register or reject) and the evaluation report are all built from it, so the same lineage
never sits under different names in different places.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ingot import storage
from ingot.errors import DataError

EVALUATION_FORMAT = "ingot.evaluation/v2"
TRAINING_KEYS = ("epochs_run", "best_epoch", "best_metrics", "hardware", "duration_s", "images_per_second")


@dataclass
class EvaluationRecord:
    """One evaluated model: its lineage, test metrics and the gate's decision.

    `extra_sections` holds further model-card sections, each a top-level key of the model card:
    the evaluate step puts the drift baseline there (`DriftBaseline.to_card()`)."""

    model_name: str
    architecture: str
    data_hash: str
    training_config: dict[str, Any]
    training: dict[str, Any]
    metrics: dict[str, Any]  # ingot.evaluate.EvaluationReport.to_dict() on the test split
    gate: dict[str, Any]  # ingot.evaluate.GateDecision.to_dict()
    champion_metrics: dict[str, Any] | None = None
    pipeline_run_id: str | None = None
    extra_sections: dict[str, Any] = field(default_factory=dict)
    format: str = EVALUATION_FORMAT

    @property
    def blessed(self) -> bool:
        return bool(self.gate.get("blessed"))

    @property
    def class_names(self) -> list[str]:
        return list(self.metrics["class_names"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Any, *, origin: str = "the evaluation record") -> EvaluationRecord:
        if not isinstance(values, dict) or values.get("format") != EVALUATION_FORMAT:
            found = values.get("format") if isinstance(values, dict) else type(values).__name__
            raise DataError(f"{origin} has format {found!r}; expected {EVALUATION_FORMAT!r} written by the evaluate step")
        names = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise DataError(f"{origin} lacks {', '.join(missing)}")
        return cls(**{key: value for key, value in values.items() if key in names})

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write atomically, so a reader never sees half a record."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        storage.atomic_write(target, json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n")

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> EvaluationRecord:
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read the evaluation record {path}: {err}") from err
        return cls.from_dict(values, origin=str(path))

    def model_card(self) -> dict[str, Any]:
        """The lineage a published model carries (export adds class names, input size, version,
        created_at and the TensorFlow version)."""
        return {
            **self.extra_sections,
            "name": self.model_name,
            "architecture": self.architecture,
            "training_config": self.training_config,
            "data_hash": self.data_hash,
            "metrics": self.metrics,
            "gate": self.gate,
            "training": self.training,
            "pipeline_run_id": self.pipeline_run_id,
        }

    def registry_fields(self) -> dict[str, Any]:
        """What the registry stores for this model (register_version / record_rejection keywords)."""
        return {
            "data_hash": self.data_hash,
            "config": self.training_config,
            "metrics": self.metrics,
            "gate": self.gate,
            "pipeline_run_id": self.pipeline_run_id,
        }

    def scalars(self) -> dict[str, float]:
        """The scalar metrics the Kubeflow UI shows."""
        metrics = self.metrics
        values = {key: float(metrics[key]) for key in ("accuracy", "macro_f1", "weighted_f1", "ece", "mean_confidence")}
        values.update({f"f1_{name}": float(metrics["per_class"][name]["f1"]) for name in self.class_names})
        return values
