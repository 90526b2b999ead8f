"""The reject component (see component.py)."""
