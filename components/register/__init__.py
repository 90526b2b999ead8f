"""The register component (see component.py)."""
