"""The evaluate component (see component.py)."""
