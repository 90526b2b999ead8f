"""Data sources, validation report, deterministic splits and the tf.data input pipeline.

Import names from their defining module (`ingot.data.sources`, `ingot.data.records`, ...): this
package imports nothing, so `import ingot.data` never imports TensorFlow.
"""
