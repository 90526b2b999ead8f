"""Evaluation (scikit-learn metrics, calibration, confidence baseline) and the blessing gate.

Import names from their defining module (`ingot.evaluate.gate` is pure Python; `metrics` imports
TensorFlow and scikit-learn only when they run): this package itself imports nothing.
"""
