"""One run of ingot-retrain as a typed request: what `ingot pipeline run`, the drift monitor's
launcher and the learning loop ask for, turned into the pipeline's parameters in one place."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ingot import settings
from ingot.errors import ConfigError, DataError, IngotError

_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class PipelineRequest:
    """The pipeline's parameters, validated when made. `recipe`: TrainConfig settings as the
    pipeline's `recipe` parameter; None fields fall back to the pipeline's (or the steps'
    environment's) defaults."""

    model_name: str
    recipe: dict[str, Any]
    dataset_uri: str = ""
    min_accuracy: float = settings.DEFAULT_MIN_ACCURACY
    min_class_f1: float = settings.DEFAULT_MIN_CLASS_F1
    max_regression: float = settings.DEFAULT_MAX_REGRESSION
    int8_max_loss: float | None = None  # None: the pipeline's default (GateThresholds.int8_max_loss)
    production: dict[str, Any] | None = None  # ProductionData.to_parameter(): train on base + production rows
    model_repository: str | None = None
    registry_url: str | None = None  # local runs only (passed to the steps in their environment)
    registry_secret: str | None = None  # KFP runs: the Secret (key `url`) holding the registry URL
    accelerator_type: str | None = None
    accelerator_limit: int | None = None
    worker_accelerator_limit: int | None = None

    def __post_init__(self) -> None:
        from ingot.evaluate.gate import GateThresholds
        from ingot.export.publishing import validate_model_name
        from ingot.retrain.production import ProductionData

        GateThresholds(min_accuracy=self.min_accuracy, min_class_f1=self.min_class_f1,
                       max_regression=self.max_regression,
                       **({} if self.int8_max_loss is None else {"int8_max_loss": self.int8_max_loss}))
        if self.production:
            ProductionData.from_parameter(self.production)  # refuses a log URL, unknown keys, a bad policy
        try:
            validate_model_name(self.model_name)
        except IngotError as err:
            raise ConfigError(f"--model-name: {err}") from None
        if self.registry_secret is not None and not _SECRET_NAME.fullmatch(self.registry_secret):
            raise ConfigError(f"--registry-secret {self.registry_secret!r} is not a Kubernetes Secret name "
                              "(lowercase letters, digits, '-' and '.', at most 253)")
        for name in ("accelerator_limit", "worker_accelerator_limit"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")

    @classmethod
    def from_config(cls, config: Any, **fields: Any) -> PipelineRequest:
        """A request training with `config` (a TrainConfig)."""
        from ingot.retrain.config import config_parameter

        return cls(recipe=config_parameter(config), **fields)

    @classmethod
    def from_recipe(cls, training_config: dict[str, Any], gate: dict[str, Any], **fields: Any) -> PipelineRequest:
        """A request retraining with a champion's recipe: its model card's `training_config` and
        gate thresholds (missing ones take the defaults)."""
        from ingot.train.config import TrainConfig

        return cls.from_config(TrainConfig.from_dict(training_config), **{**gate, **fields})

    def for_local_run(self) -> PipelineRequest:
        """The request as local steps (subprocesses) need it: absolute paths, the model repository
        and registry resolved from the environment's defaults, the dataset checked to exist."""
        dataset = _local_uri(self.dataset_uri)
        if dataset.startswith("/") and not Path(dataset).exists():
            raise DataError(f"--dataset {dataset} does not exist; expected an image folder "
                            "(one subfolder per class), a CIFAR-10 archive or directory, or bundled:digits")
        production = self.production
        if production and production.get("capture_url"):
            production = {**production, "capture_url": _local_uri(production["capture_url"])}
        return replace(self, dataset_uri=dataset,
                       model_repository=_local_uri(self.model_repository or settings.model_repository()),
                       registry_url=local_registry_url(self.registry_url), production=production)

    def arguments(self) -> dict[str, Any]:
        """The pipeline's parameters (unset ones left to the pipeline's defaults)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def without_secrets(self) -> tuple[PipelineRequest, dict[str, str]]:
        """(the request without the registry URL, the environment the steps read it from): a URL
        holds a password, and parameters end up in process arguments and run records."""
        if not self.registry_url:
            return self, {}
        return replace(self, registry_url=None), {settings.REGISTRY_URL_ENV: self.registry_url}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PipelineRequest:
        return cls(**json.loads(text))


def _local_uri(value: str) -> str:
    """Absolute paths for local runs (steps are subprocesses; be explicit); URIs and bundled
    dataset names pass through."""
    if not value or "://" in value or value.startswith(("bundled:", "keras:")) or value in ("digits",):
        return value
    return str(Path(value).expanduser().resolve())


def local_registry_url(url: str | None) -> str:
    """The registry URL local steps (subprocesses) get: given, else the default, with a relative
    SQLite path made absolute."""
    from ingot.registry.store import default_url, normalize_url

    parsed = normalize_url(url or default_url())
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:" \
            and not parsed.database.startswith("file:"):
        parsed = parsed.set(database=str(Path(parsed.database).expanduser().resolve()))
    return parsed.render_as_string(hide_password=False)
