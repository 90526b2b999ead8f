"""The training recipe: a typed dataclass, loadable from YAML and overridable as `key=value`.

Values are coerced from each field's type, so a recipe file, a command-line override and a
pipeline parameter all end up as the same typed config; a misspelled key is refused with the
valid ones listed instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingot.data.preprocess import AugmentationConfig
from ingot.errors import ConfigError
from ingot.models.catalog import (
    CNN,
    TRANSFER_ARCHITECTURES,
    check_architecture,
    check_image_size,
)

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
VERBOSITY = ("auto", "bar", "lines", "quiet")
DISTRIBUTIONS = ("auto", "multi_worker")
MIXED_PRECISION = ("auto", True, False)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is trained (and is recorded in its model card)."""

    architecture: str = "cnn"
    image_size: tuple[int, int] = (32, 32)
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    early_stopping_patience: int = 5
    seed: int = 42
    # TensorFlow op determinism (tf.config.experimental.enable_op_determinism): with the seed,
    # the same data and config give the same weights; false trades that for speed.
    deterministic: bool = True
    # "auto": mixed_float16 when a GPU is visible, float32 on CPU (where float16 is slower).
    mixed_precision: str | bool = "auto"
    # XLA for the train and predict steps (Keras jit_compile): "auto" is Keras's choice (XLA on
    # a GPU when every layer supports it, never on CPU); true/false force it.
    jit_compile: str | bool = "auto"
    # "auto": MirroredStrategy over the GPUs of this machine (when more than one), else none;
    # "multi_worker": MultiWorkerMirroredStrategy over `workers` processes described by TF_CONFIG
    # (local worker processes, or a TFJob's pods), resuming from `backup_dir` after a restart.
    distribution: str = "auto"
    workers: int = 1
    backup_dir: str | None = None
    checkpoint_dir: str | None = None
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    min_images_per_class: int = 5
    # The Dataset artifact's TFRecord shards close at about this size (MiB).
    shard_mb: int = 128
    # Batch sizes of the export's warm-up records (ingot.export.saved_model). On CPU a version's
    # first call is what warm-up removes, and a new batch size after it costs no more than a
    # steady call, so 1 is enough; on a GPU list the sizes the batcher pads to (cuDNN tunes per shape).
    warmup_batch_sizes: tuple[int, ...] = (1,)
    # Transfer architectures only: unfreeze this many top backbone layers after the head trains.
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 10
    # "auto": ImageNet for transfer architectures, random initialization for the cnn.
    weights: str = "auto"
    batch_norm: bool = False
    dropout: float = 0.2
    # "auto": Keras progress bars on a terminal, one line per epoch otherwise (logs, CI, pods).
    verbose: str = "auto"
    # The data this recipe is meant for (a path or URI `ingot.data.load_dataset` accepts).
    dataset: str | None = None

    def __post_init__(self) -> None:
        hints = _field_types()
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name]))
        self._validate()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TrainConfig:
        values = dict(values or {})
        _check_keys(values)
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        import yaml

        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist; expected a YAML recipe file")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"config file {str(path)!r} must hold a mapping of settings; got {type(values).__name__}"
            )
        try:
            return cls.from_dict(values)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    def with_overrides(self, overrides: Iterable[str]) -> TrainConfig:
        """A copy with `key=value` settings applied; `augmentation.rotation=0.1` reaches nested ones.

        Values are read as YAML scalars/lists (`true`, `null`, `[64, 64]`), then coerced to the
        field's type.
        """
        import yaml

        values = self.to_dict()
        for item in overrides:
            key, sep, raw = str(item).partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"override {item!r} is not valid; expected key=value, e.g. epochs=3")
            try:
                value = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError:
                value = raw
            head, dot, rest = key.partition(".")
            _check_keys({head: None})
            if dot:
                if head != "augmentation":
                    raise ConfigError(f"override {item!r}: {head} has no nested settings")
                values["augmentation"] = {**values["augmentation"], rest: value}
            else:
                values[head] = value
        return TrainConfig.from_dict(values)

    # -- views --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable settings (a model card records exactly these)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, AugmentationConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @property
    def is_transfer(self) -> bool:
        return self.architecture in TRANSFER_ARCHITECTURES

    @property
    def resolved_weights(self) -> str | None:
        """The `weights` option for `build_model`: "imagenet", None or a file path."""
        if self.weights == "auto":
            return "imagenet" if self.is_transfer else None
        if self.weights.lower() == "none":
            return None
        return self.weights

    def model_options(self) -> dict[str, Any]:
        """Keyword options for `ingot.models.builders.build_model` (besides num_classes)."""
        options: dict[str, Any] = {"dropout": self.dropout, "weights": self.resolved_weights}
        if not self.is_transfer:
            options["batch_norm"] = self.batch_norm
        return options

    # -- validation ---------------------------------------------------------------------------

    def _validate(self) -> None:
        check_architecture(self.architecture)
        check_image_size(self.architecture, self.image_size)
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("early_stopping_patience", self.early_stopping_patience, 0)
        _at_least("min_images_per_class", self.min_images_per_class, 1)
        _at_least("shard_mb", self.shard_mb, 1)
        for size in self.warmup_batch_sizes:
            _at_least("warmup_batch_sizes", size, 1)
        if len(self.warmup_batch_sizes) > 100:
            raise ConfigError(f"warmup_batch_sizes has {len(self.warmup_batch_sizes)} sizes; expected at most 100")
        _at_least("fine_tune_layers", self.fine_tune_layers, 0)
        _at_least("fine_tune_epochs", self.fine_tune_epochs, 0)
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate={self.learning_rate} is not valid; expected a positive number")
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("verbose", self.verbose, VERBOSITY)
        _one_of("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _one_of("jit_compile", self.jit_compile, MIXED_PRECISION)
        _one_of("distribution", self.distribution, DISTRIBUTIONS)
        _at_least("workers", self.workers, 1)
        if self.workers > 1 and self.distribution != "multi_worker":
            raise ConfigError(f"workers={self.workers} needs distribution=multi_worker (one process per worker)")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(
                f"validation_fraction={self.validation_fraction} is out of range; expected a fraction "
                "between 0 and 1 (early stopping needs a validation split)"
            )
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction={self.test_fraction} is out of range; expected 0 <= test_fraction < 1")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                f"validation_fraction + test_fraction = {self.validation_fraction + self.test_fraction:g} "
                "leaves no training data; expected a sum below 1"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} is out of range; expected 0 <= dropout < 1")
        if not self.weights.strip():
            raise ConfigError("weights is empty; expected auto, imagenet, none or a weights file path")
        if self.architecture == CNN:
            if self.weights.lower() == "imagenet":
                raise ConfigError(
                    "weights=imagenet is not available for the cnn; use auto/none or a weights file path"
                )
            if self.fine_tune_layers > 0:
                raise ConfigError(
                    f"fine_tune_layers={self.fine_tune_layers} applies to transfer architectures "
                    f"({', '.join(TRANSFER_ARCHITECTURES)}); the cnn trains all its layers already"
                )
        elif self.batch_norm:
            raise ConfigError(
                f"batch_norm applies to the cnn only; {self.architecture} has its own normalization layers"
            )


def valid_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _check_keys(values: Mapping[str, Any]) -> None:
    keys = valid_keys()
    for key in values:
        if key not in keys:
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}; valid keys: {', '.join(keys)}")


_TYPES: dict[str, Any] = {}


def _field_types() -> dict[str, Any]:
    if not _TYPES:
        _TYPES.update(typing.get_type_hints(TrainConfig))
    return _TYPES


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Turn `value` (from YAML, a CLI string or Python) into `annotation`'s type, or explain."""
    if annotation is AugmentationConfig:
        if isinstance(value, AugmentationConfig):
            return value
        if value is None:
            return AugmentationConfig()
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"augmentation={value!r} is not valid; expected a mapping with flip, rotation, zoom"
            )
        values = dict(value)
        for key in ("rotation", "zoom"):
            if key in values:
                values[key] = _coerce(f"augmentation.{key}", values[key], float)
        return AugmentationConfig.from_dict(values)
    if name in ("mixed_precision", "jit_compile"):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            return _to_bool(name, value)
        except ConfigError:
            raise ConfigError(f"{name}={value!r} is not valid; expected auto, true or false") from None
    args = typing.get_args(annotation)
    if type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner)
    if name == "warmup_batch_sizes":
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            value = [value] if isinstance(value, int) else [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{name}={value!r} is not valid; expected a list of batch sizes, e.g. [1, 8, 32]")
        return tuple(_coerce(f"{name}[{i}]", v, int) for i, v in enumerate(value))
    if typing.get_origin(annotation) is tuple:
        return _image_size(name, value)
    if annotation is bool:
        return _to_bool(name, value)
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} is not valid; expected an integer")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}={value!r} is not valid; expected an integer") from None
        if not number.is_integer():
            raise ConfigError(f"{name}={value!r} is not valid; expected an integer")
        return int(number)
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} is not valid; expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}={value!r} is not valid; expected a number") from None
    if annotation is str:
        if name == "weights" and value is None:
            return "none"
        if isinstance(value, (str, Path)):
            return str(value)
        raise ConfigError(f"{name}={value!r} is not valid; expected a string")
    raise ConfigError(f"{name}: unsupported setting type {annotation!r}")  # a bug, not user input


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{name}={value!r} is not valid; expected true or false")


def _image_size(name: str, value: Any) -> tuple[int, int]:
    """[H, W], a single side for a square, or "HxW" / "H,W"."""
    if isinstance(value, str):
        parts = value.lower().replace("x", ",").strip("[]() ").split(",")
        value = [p for p in (part.strip() for part in parts) if p]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 2):
        raise ConfigError(f"{name}={value!r} is not valid; expected [height, width] or one side for a square")
    if len(value) == 1:
        value = [value[0], value[0]]
    return (_coerce(name, value[0], int), _coerce(name, value[1], int))


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{name}={value} is not valid; expected an integer >= {minimum}")


def _one_of(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        shown = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices)
        raise ConfigError(f"{name}={value!r} is not valid; expected one of {shown}")
