"""The training recipe a run uses, resolved the same way by `ingot train`, `ingot pipeline` and the
pipeline's ingest step: the one config loader."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingot import settings
from ingot.errors import ConfigError

if TYPE_CHECKING:
    from ingot.train.config import TrainConfig


def resolve_config(
    recipe: dict[str, Any] | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    architecture: str = "",
    epochs: int = 0,
) -> TrainConfig:
    """The TrainConfig a run uses: the recipe's settings (a mapping, or a recipe YAML file), then
    `key=value` overrides, then the pipeline's first-class `architecture`/`epochs` parameters
    ("" and 0 mean "the recipe's")."""
    from ingot.train.config import TrainConfig

    if recipe is not None and not isinstance(recipe, (dict, Path)):
        raise ConfigError(f"recipe must be a mapping of TrainConfig settings, got {type(recipe).__name__}")
    if isinstance(overrides, str) or not all(isinstance(item, str) for item in overrides):
        raise ConfigError(f"overrides must be a list of key=value strings, got {overrides!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs={epochs!r} is not valid; expected a positive integer, or 0 for the recipe's")
    extra = list(overrides)
    if architecture:
        extra.append(f"architecture={architecture}")
    if epochs:
        extra.append(f"epochs={epochs}")
    config = TrainConfig.from_yaml(recipe) if isinstance(recipe, Path) else TrainConfig.from_dict(recipe or {})
    return config.with_overrides(extra) if extra else config


def config_parameter(config: TrainConfig) -> dict[str, Any]:
    """A TrainConfig as a pipeline parameter: its settings minus the unset (None) ones, which
    kfp parameters cannot carry and `TrainConfig.from_dict` restores as defaults."""
    return {key: value for key, value in config.to_dict().items() if value is not None}


def resolve_dataset(dataset_uri: str | None, config: TrainConfig) -> str:
    """The dataset to load: the explicit URI, else the recipe's `dataset`, else bundled digits."""
    return (dataset_uri or "").strip() or config.dataset or settings.DEFAULT_DATASET
