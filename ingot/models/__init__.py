"""Image classifier architectures by name; normalization always lives inside the model.

`ingot.models.catalog` (names and size checks) is plain Python; `ingot.models.builders` imports
Keras. This package imports nothing itself, so `import ingot.models` stays cheap.
"""
