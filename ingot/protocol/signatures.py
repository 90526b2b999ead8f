"""Ingot's SavedModel signature contract (docs/architecture.md section 3): the names the model
builders, the exporter, the server, the client and the gateway's log use. Defined only here, so
they cannot drift apart."""

from __future__ import annotations

SERVING_DEFAULT = "serving_default"  # images uint8 [batch, H, W, 3]
SERVING_BYTES = "serving_bytes"  # image_bytes string [batch]: JPEG/PNG/GIF/BMP, decoded in the graph
IMAGES_INPUT = "images"
BYTES_INPUT = "image_bytes"

PROBABILITIES = "probabilities"  # float32 [batch, C]
CLASS_IDS = "class_ids"  # int64 [batch]
CLASS_NAMES = "class_names"  # string [batch]
OUTPUT_KEYS = (PROBABILITIES, CLASS_IDS, CLASS_NAMES)

PREDICT_METHOD = "tensorflow/serving/predict"

SERVING_EMBEDDING = "serving_embedding"  # images uint8 [batch, H, W, 3] -> the penultimate layer
EMBEDDING = "embedding"  # float32 [batch, d]: the embedding output of SERVING_EMBEDDING
EMBEDDING_REFERENCE_FILE = "embedding_reference.npy"  # validation embeddings in assets.extra/
