"""Export a Keras classifier to the SavedModel serving contract (docs/architecture.md, section 3)
(`ingot.export.saved_model`) and publish it into a TF Serving model repository
(`ingot.export.publishing`). This package imports nothing, so `import ingot.export` never imports
TensorFlow.
"""
