"""Kubeflow Pipelines v2 pipeline definitions; their compiled IR YAML lives in compiled/."""
