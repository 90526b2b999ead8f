"""The publish component (see component.py)."""
