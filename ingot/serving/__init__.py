"""Ingot's local TF-Serving-compatible model server.

Speaks TensorFlow Serving's REST and gRPC APIs over the same model repository and honours the
same model config, batching and monitoring files, so a client written for one works against the
other. Importing this package is cheap; TensorFlow loads only when a server starts.
"""
