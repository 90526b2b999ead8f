"""Drift monitor: windows of the inference log against the model card's baseline (statistics),
and retraining triggered with a cooldown and at most one run in flight (triggers).

Submodules import numpy/scipy/SQLAlchemy only when used, so `ingot --help` stays fast.
"""
