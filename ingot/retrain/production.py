"""What a triggered retraining run trains on by default: the base dataset plus the labelled
production rows (captured inputs joined with their feedback labels), built as a new dataset
version before the pipeline runs, so the run's ingest step takes that artifact as it is.

The base is the champion's recipe applied to its dataset (the same seed gives the same split, so
the base test split is the one every earlier version was judged on); the production rows are
split by time, the newest `holdout_fraction` kept as the `production_holdout` the evaluate step
scores candidate and champion on (ingot.capture.dataset).

Locally the background runner builds it before the pipeline starts; on a cluster the pipeline's
`build-data` step does, from the `production` parameter (`pipeline_training_data`): the same
function, its output a Dataset artifact the ingest step takes as it is."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingot import settings, storage
from ingot.errors import ConfigError

if TYPE_CHECKING:
    from ingot.capture.dataset import BuildResult
    from ingot.registry.datasets import DatasetVersion
    from ingot.train.config import TrainConfig

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
    until: str | None = None            # the window's end (ISO 8601); None: when the build runs

    def __post_init__(self) -> None:
        if not self.capture_url:
            raise ConfigError("training on production data needs the capture store (--capture-url)")
        if self.window_s is not None and self.window_s <= 0:
            raise ConfigError(f"production window {self.window_s} s must be positive")
        if self.until is not None:
            self.window_end()
        from ingot.capture.dataset import BuildPolicy

        BuildPolicy(holdout_fraction=self.holdout_fraction, production_weight=self.production_weight,
                    max_rows=self.max_rows)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ProductionData:
        return cls(**json.loads(text))

    def window_end(self, now: datetime | None = None) -> datetime:
        """`until` as an aware UTC time, else `now` (else the current time)."""
        from datetime import UTC

        if self.until is None:
            return now or datetime.now(UTC)
        try:
            end = datetime.fromisoformat(self.until.replace("Z", "+00:00"))
        except (TypeError, ValueError):
            raise ConfigError(f"production until={self.until!r} is not an ISO 8601 time") from None
        return end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)

    def to_parameter(self) -> dict[str, Any]:
        """The pipeline's `production` parameter: the policy without the log URL (a database URL
        holds a password; the build step reads it from its environment) and without unset fields."""
        return {key: value for key, value in asdict(self).items() if value is not None and key != "log_url"}

    @classmethod
    def from_parameter(cls, value: dict[str, Any], *, log_url: str | None = None) -> ProductionData:
        """The policy the pipeline's `production` parameter carries; `log_url` from the environment."""
        if not isinstance(value, dict):
            raise ConfigError(f"production must be a mapping of the production-data policy, got {type(value).__name__}")
        if "log_url" in value:
            raise ConfigError("production.log_url: the inference log's URL holds a password and is never a run "
                              f"parameter; the build step reads ${settings.LOG_URL_ENV} (on a cluster from the "
                              "registry Secret's `log_url` key), else uses the registry's database")
        known = {"capture_url", "production_weight", "holdout_fraction", "window_s", "max_rows", "until"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"production: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        # A pipeline parameter travels as a protobuf Struct, whose numbers are all doubles.
        counts = {key: int(value[key]) for key in ("production_weight", "max_rows")
                  if isinstance(value.get(key), float) and value[key].is_integer()}
        return cls(**{**value, **counts}, log_url=log_url or None)

    def describe(self) -> str:
        rows = f"the newest {self.max_rows} labelled production rows" if self.max_rows else "labelled production rows"
        return f"base + {rows} x{self.production_weight}, newest {self.holdout_fraction:.0%} of them held out"


@dataclass
class TrainingData:
    directory: str
    dataset_version: DatasetVersion
    build: BuildResult


def build_training_data(production: ProductionData, *, model: str, dataset_uri: str,
                        recipe: dict[str, Any] | TrainConfig, work_dir: str | Path, registry_url: str,
                        now: datetime | None = None, output: str | None = None,
                        record_uri: str | None = None, base_scratch: bool = False) -> TrainingData:
    """Ingest the base with the recipe (a mapping, or the resolved TrainConfig), build base +
    production into `output` (default `work_dir/dataset`) and record the dataset version in the
    registry under `record_uri` (default: where it was written); the run then trains on it. The
    window ends at `production.until`, else `now`, else the current time. `base_scratch`: the
    ingested base lives in a scratch directory (a pod's), so the sources name the dataset itself."""
    from ingot.capture.dataset import BuildPolicy, build_dataset
    from ingot.inference_log.store import InferenceLogStore
    from ingot.registry import Registry
    from ingot.registry.datasets import record_dataset_version
    from ingot.retrain.config import resolve_config, resolve_dataset
    from ingot.retrain.steps import ingest
    from ingot.train.config import TrainConfig

    work = Path(work_dir).expanduser().resolve()
    config = recipe if isinstance(recipe, TrainConfig) else resolve_config(recipe)
    base_dir = work / "base-dataset"
    source = resolve_dataset(dataset_uri, config)
    ingest(source, base_dir, config)
    until = production.window_end(now)
    since = until - timedelta(seconds=production.window_s) if production.window_s else None
    policy = BuildPolicy(holdout_fraction=production.holdout_fraction, production_weight=production.production_weight,
                         max_rows=production.max_rows)
    with InferenceLogStore.from_url(production.log_url or registry_url) as log:
        built = build_dataset(model=model, base=str(base_dir), output=output or str(work / "dataset"),
                              log_engine=log.engine, base_uri=source if base_scratch else None,
                              capture_url=production.capture_url, since=since, until=until, policy=policy,
                              class_names=None)
    with Registry.from_url(registry_url) as registry:
        version = record_dataset_version(
            registry, model=model, content_hash=built.content_hash, uri=record_uri or built.directory,
            parent_hash=built.sources["base"]["content_hash"], window_start=since, window_end=until,
            counts=built.counts, sources=built.sources)
    return TrainingData(directory=built.directory, dataset_version=version, build=built)


# What the build step leaves in its Dataset artifact when the run has no production policy: a
# note, not a dataset (the KFP launcher uploads every declared output, so it must hold a file).
NOT_BUILT_NOTE = "not-built.json"


def pipeline_training_data(parameter: dict[str, Any], *, model: str, dataset_uri: str, config: TrainConfig | None,
                           output: str, output_uri: str, registry_url: str | None = None,
                           log_url: str | None = None) -> dict[str, Any]:
    """The pipeline's `build-data` step: with a `production` policy, build base + labelled production
    rows into `output` (the step's Dataset artifact, which the ingest step then takes as it is) and
    record the dataset version under `output_uri` (the artifact's object-storage URI); with none
    (`{}`), leave a note there and the run trains on the base. Returns the artifact's metadata.

    The policy must name its window's end (`until`): KFP caches a step by its parameters, so the
    window is part of them, and a run with the same parameters builds the same version. The
    registry and log URLs come from `$INGOT_REGISTRY_URL` / `$INGOT_LOG_URL` unless given."""
    import json
    import tempfile

    if not parameter:
        storage.makedirs(output)
        storage.atomic_write(storage.join(output, NOT_BUILT_NOTE), json.dumps(
            {"built": False, "reason": "no production policy: the run trains on the base dataset"}) + "\n")
        return {"built": False}
    production = ProductionData.from_parameter(parameter, log_url=log_url or os.environ.get(settings.LOG_URL_ENV))
    if production.until is None:
        raise ConfigError("production.until is required in a pipeline run: the window's end (ISO 8601, e.g. "
                          "2026-12-01T12:00:00Z), so the run's parameters name the data it trains on and a cached "
                          "step never stands for a later window (ingot monitor --trigger sets it to the trigger's time)")
    if config is None:
        raise ConfigError("building production data needs the run's training config (the recipe), got none")
    registry = settings.required_registry_url(registry_url)
    with tempfile.TemporaryDirectory(prefix="ingot-build-data-") as scratch:
        built = build_training_data(production, model=model, dataset_uri=dataset_uri, recipe=config,
                                    work_dir=scratch, registry_url=registry, output=output, record_uri=output_uri,
                                    base_scratch=True)
    rows = built.build.sources["production"]
    return {"built": True, "dataset_version": built.dataset_version.id, "content_hash": built.build.content_hash,
            "policy": production.describe(), "window": rows["window"], "train_rows": rows["train_rows"],
            "holdout_rows": rows["holdout_rows"], "labelled_inputs": rows["labelled_inputs"],
            "counts": built.build.counts}
