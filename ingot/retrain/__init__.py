"""The retraining steps as library functions, one module per concern:

- `ingot.retrain.config`: the recipe a run uses (recipe, overrides, pipeline parameters).
- `ingot.retrain.steps`: ingest -> train -> evaluate -> export -> publish, each reading and
  writing directories (artifacts), so the pipeline's components run them in separate pods and
  `ingot train` chains them in one process.
- `ingot.retrain.registry`: the registry side (champion to beat, register, record a rejection),
  used alike by `ingot train --register` and the pipeline's register/reject steps.

The reports live in `ingot.reports`; the Kubeflow glue (artifact paths in, JSON values out) in
`components/steps.py`. Nothing here imports kfp, and importing this package imports no TensorFlow.
"""

from __future__ import annotations

from ingot._lazy import lazy_exports

_EXPORTS = {
    "resolve_config": "ingot.retrain.config",
    "config_parameter": "ingot.retrain.config",
    "resolve_dataset": "ingot.retrain.config",
    "IngestOutput": "ingot.retrain.steps",
    "TrainOutput": "ingot.retrain.steps",
    "Evaluation": "ingot.retrain.steps",
    "ValidationPredictions": "ingot.retrain.steps",
    "MODEL_FILE": "ingot.retrain.steps",
    "TRAINING_JSON": "ingot.retrain.steps",
    "ingest": "ingot.retrain.steps",
    "train": "ingot.retrain.steps",
    "load_trained": "ingot.retrain.steps",
    "evaluate": "ingot.retrain.steps",
    "export": "ingot.retrain.steps",
    "publish": "ingot.retrain.steps",
    "open_registry": "ingot.retrain.registry",
    "champion_metrics": "ingot.retrain.registry",
    "check_destinations": "ingot.retrain.registry",
    "register": "ingot.retrain.registry",
    "reject": "ingot.retrain.registry",
    "registry_summary": "ingot.retrain.registry",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
