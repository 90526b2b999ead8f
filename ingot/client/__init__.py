"""One Python client for TF Serving's REST and gRPC APIs (Ingot's local server or the official
TensorFlow Serving image): `Client.connect("http://localhost:8501")` or
`Client.connect("grpc://localhost:8500")`, then `classify`, `predict`, `metadata`, `status`.

The REST transport needs only the standard library and numpy; gRPC imports
tensorflow-serving-api (and with it TensorFlow) when first used.
"""

from ingot.client.base import Client, Prediction, RetryPolicy, read_image_bytes
from ingot.client.transport import ServedBy, VersionStatus
from ingot.protocol.status import Code, ServingError

__all__ = ["Client", "Code", "Prediction", "RetryPolicy", "ServedBy", "ServingError", "VersionStatus", "read_image_bytes"]
