"""What a triggered retraining run trains on by default: the base dataset plus the labelled
production rows (captured inputs joined with their feedback labels), built as a new dataset
version before the pipeline runs, so the run's ingest step takes that artifact as it is.

The base is the champion's recipe applied to its dataset (the same seed gives the same split, so
the base test split is the one every earlier version was judged on); the production rows are
split by time, the newest `holdout_fraction` kept as the `production_holdout` the evaluate step
scores candidate and champion on (ingot.capture.dataset)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingot.errors import ConfigError

if TYPE_CHECKING:
    from ingot.capture.dataset import BuildResult
    from ingot.registry.datasets import DatasetVersion

DEFAULT_PRODUCTION_WEIGHT = 3  # measured on the drifted digits stream: 0.89 at 1x, 0.92 at 3x (docs/capture.md)


@dataclass(frozen=True)
class ProductionData:
    """Where the production rows come from and how they are merged (`ingot data build`'s policy)."""

    capture_url: str
    log_url: str | None = None          # the inference log; None: the registry's database
    production_weight: int = DEFAULT_PRODUCTION_WEIGHT
    holdout_fraction: float = 0.2
    window_s: float | None = None       # only rows requested in the last this many seconds; None: all
    max_rows: int | None = None         # only the newest this many labelled inputs; None: all

    def __post_init__(self) -> None:
        if not self.capture_url:
            raise ConfigError("training on production data needs the capture store (--capture-url)")
        if self.window_s is not None and self.window_s <= 0:
            raise ConfigError(f"production window {self.window_s} s must be positive")
        from ingot.capture.dataset import BuildPolicy

        BuildPolicy(holdout_fraction=self.holdout_fraction, production_weight=self.production_weight,
                    max_rows=self.max_rows)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ProductionData:
        return cls(**json.loads(text))

    def describe(self) -> str:
        rows = f"the newest {self.max_rows} labelled production rows" if self.max_rows else "labelled production rows"
        return f"base + {rows} x{self.production_weight}, newest {self.holdout_fraction:.0%} of them held out"


@dataclass
class TrainingData:
    directory: str
    dataset_version: DatasetVersion
    build: BuildResult


def build_training_data(production: ProductionData, *, model: str, dataset_uri: str, recipe: dict[str, Any],
                        work_dir: str | Path, registry_url: str, now: datetime | None = None) -> TrainingData:
    """Ingest the base with the recipe, build base + production into `work_dir/dataset` and record
    the dataset version in the registry; the run then trains on that directory."""
    from datetime import UTC

    from ingot.capture.dataset import BuildPolicy, build_dataset
    from ingot.inference_log.store import InferenceLogStore
    from ingot.registry import Registry
    from ingot.registry.datasets import record_dataset_version
    from ingot.retrain.config import resolve_config, resolve_dataset
    from ingot.retrain.steps import ingest

    work = Path(work_dir).expanduser().resolve()
    config = resolve_config(recipe)
    base_dir = work / "base-dataset"
    ingest(resolve_dataset(dataset_uri, config), base_dir, config)
    until = now or datetime.now(UTC)
    since = until - timedelta(seconds=production.window_s) if production.window_s else None
    policy = BuildPolicy(holdout_fraction=production.holdout_fraction, production_weight=production.production_weight,
                         max_rows=production.max_rows)
    with InferenceLogStore.from_url(production.log_url or registry_url) as log:
        built = build_dataset(model=model, base=str(base_dir), output=str(work / "dataset"), log_engine=log.engine,
                              capture_url=production.capture_url, since=since, until=until, policy=policy,
                              class_names=None)
    with Registry.from_url(registry_url) as registry:
        version = record_dataset_version(
            registry, model=model, content_hash=built.content_hash, uri=built.directory,
            parent_hash=built.sources["base"]["content_hash"], window_start=since, window_end=until,
            counts=built.counts, sources=built.sources)
    return TrainingData(directory=built.directory, dataset_version=version, build=built)
