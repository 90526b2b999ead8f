"""Tests of the pipeline components and the ingot.retrain steps they call."""
