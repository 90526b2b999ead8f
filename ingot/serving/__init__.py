"""Ingot's local TF-Serving-compatible model server (`ingot serve`).

It speaks TensorFlow Serving's REST API (`/v1/models/...`, `:predict` in row and columnar form,
`/metadata`, model status, `{"error": ...}` bodies with TF Serving's HTTP codes) and gRPC API
(tensorflow-serving-api's PredictionService and ModelService) over the same model repository
layout, and reads TF Serving's own config formats (ModelServerConfig, BatchingParameters,
MonitoringConfig) and flags. A client written for one works against the other.

Modules: `config` (formats, version policy), `manager` (version lifecycle), `servable` (one loaded
SavedModel, warm-up), `batching` (the scheduler), `rest` and `grpc_service` (the front ends: wire
formats via ingot.protocol, limits, errors), `aiohttp_pin` (the only aiohttp internals used,
pinned and tested), `parsing` (large REST bodies decoded in worker processes), `frontend` (what
both front ends share: limits, draining, in-flight tracking, the predict-error hook), `backend` (the interface the front ends call) and `local` (the
backend over this process's models), `metrics`, `server` (process, shutdown). The wire formats
themselves (routes, JSON codec, tensors, status codes) are in ingot.protocol, shared with the
client and the gateway.

Where Ingot differs from TF Serving, on purpose:
- Classify, Regress and MultiInference answer UNIMPLEMENTED (501 over REST): Ingot's signatures
  are predict signatures returning probabilities and class ids.
- Prometheus metrics are on at `/monitoring/prometheus/metrics` without a monitoring config
  (a MonitoringConfig file can move or disable them), and carry a `model_version` label.
- Extra routes: `/healthz` (alive), `/readyz` (every model has an AVAILABLE version; false while
  draining), `/ingot/models` (model names, versions, labels); REST predict answers carry an
  `X-Model-Version` header naming the version that answered.
- Version labels may name a version that is not (yet) available (TF Serving's
  --allow_version_labels_for_unavailable_models); requests through such a label get NOT_FOUND.
- A version that fails to load never costs the model its serving version (TF Serving may unload
  the old one); a model whose versions all vanish from disk keeps serving what it has.
- Limits against hostile input: body size (413), JSON nesting depth, tensor element count.

Importing this package is cheap; TensorFlow loads only when a server starts.
"""
