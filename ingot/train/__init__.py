"""Training: the typed recipe (`ingot.train.config`, plain Python), the fit loop
(`ingot.train.trainer`, Keras), the Model artifact (`ingot.train.artifact`) and multi-worker
training (`ingot.train.distributed`, `ingot.train.tfjob`). This package imports nothing itself.
"""
