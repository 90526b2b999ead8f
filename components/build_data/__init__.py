"""The build-data component (see component.py)."""
