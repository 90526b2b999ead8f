"""Evaluation (scikit-learn metrics, calibration, confidence baseline) and the blessing gate.

Public names are re-exported lazily so `import ingot.evaluate` stays cheap: the gate is pure
Python, and metrics import TensorFlow and scikit-learn only when they run.
"""

from __future__ import annotations

from ingot._lazy import lazy_exports

_EXPORTS = {
    "EvaluationReport": "ingot.evaluate.metrics",
    "evaluate_model": "ingot.evaluate.metrics",
    "evaluate_predictions": "ingot.evaluate.metrics",
    "confidence_baseline": "ingot.evaluate.metrics",
    "confidence_baseline_from_probabilities": "ingot.evaluate.metrics",
    "expected_calibration_error": "ingot.evaluate.metrics",
    "confidence_bin_index": "ingot.evaluate.metrics",
    "ECE_BINS": "ingot.evaluate.metrics",
    "EvaluationRecord": "ingot.evaluate.record",
    "EVALUATION_FORMAT": "ingot.evaluate.record",
    "GateThresholds": "ingot.evaluate.gate",
    "GateDecision": "ingot.evaluate.gate",
    "bless": "ingot.evaluate.gate",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
