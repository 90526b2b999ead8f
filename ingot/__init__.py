"""Ingot: retrain and serve TensorFlow/Keras image classifiers on Kubernetes.

Importing this package does no work: TensorFlow and friends are imported by the modules that
need them, so the CLI starts fast and `ingot --help` never loads a framework.
"""

__version__ = "0.1.0"
