"""Tests of the ingot-retrain pipeline: compiled IR, local runs, and the pipeline CLI."""
