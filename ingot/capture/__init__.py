"""Production inputs kept for training: the gateway's capture store and the dataset build that
joins captured inputs with their feedback labels (docs/capture.md)."""
