"""The retraining steps as library functions, one module per concern:

- `ingot.retrain.config`: the recipe a run uses (recipe, overrides, pipeline parameters).
- `ingot.retrain.steps`: ingest -> train -> evaluate, each reading and writing directories
  (artifacts), so the pipeline's components run them in separate pods and `ingot train` chains
  them in one process; export and publish are `ingot.export`'s.
- `ingot.retrain.registry`: the registry side (register, record a rejection), used alike by
  `ingot train --register` and the pipeline's register/reject steps.

The reports live in `ingot.reports`; the Kubeflow glue (artifact paths in, JSON values out) in
`components/steps.py`. Nothing here imports kfp, and importing this package imports no TensorFlow.
"""
