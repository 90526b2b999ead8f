"""The ingest component (see component.py)."""
