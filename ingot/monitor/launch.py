"""What a drift trigger retrains with (the champion's recipe), and the launcher interface a
check starts and follows runs through. The launchers themselves live in the Kubeflow layer
(`pipelines.launch`) and are handed in by the CLI, so the monitor never imports it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ingot.errors import ConfigError
from ingot.monitor.triggers import Trigger, TriggerStore


@dataclass(frozen=True)
class Recipe:
    """What a triggered run trains with: the champion's settings and gate thresholds."""

    training_config: dict[str, Any]
    gate: dict[str, Any]

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> Recipe:
        config = card.get("training_config")
        if not isinstance(config, Mapping):
            raise ConfigError("the champion's model card has no 'training_config': cannot retrain with its recipe")
        thresholds = dict(((card.get("gate") or {}).get("thresholds")) or {})
        keys = ("min_accuracy", "min_class_f1", "max_regression", "int8_max_loss")
        return cls(dict(config), {key: thresholds[key] for key in keys if thresholds.get(key) is not None})


class Launcher(Protocol):
    """Starts ingot-retrain for a claimed trigger and brings an in-flight trigger's state up to
    date. `backend`: the trigger table's name for where runs go (LOCAL or KFP)."""

    @property
    def backend(self) -> str: ...

    def start(self, store: TriggerStore, trigger: Trigger, recipe: Recipe) -> Trigger: ...

    def refresh(self, store: TriggerStore, trigger: Trigger) -> Trigger: ...
