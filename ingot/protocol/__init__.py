"""TensorFlow Serving's protocol, once, for everything that speaks it: the local server
(`ingot serve`), the Python client and the gateway.

Modules:
- `status`: canonical error codes, their HTTP/gRPC mappings, `ServingError`;
- `routes`: `/v1/models/...` path parsing (`parse_v1_path`, `V1Route`);
- `model_spec`: which model a request names (`ModelSpec`), as a REST path and a gRPC ModelSpec;
- `rest`: the REST JSON codec in both directions, one job per module (ingot.protocol.rest);
- `tensors`: TensorProto <-> numpy, signature specs and the checks against them;
- `documents`: model status and metadata documents (REST JSON and gRPC messages);
- `images`: encoded-image header checks;
- `signatures`: Ingot's signature contract (signature, input and output names);
- `headers`: Ingot's `x-ingot-*` header names; `names`: the model-name rules.

Importing the package is cheap: numpy at most; tensorflow-serving-api protos load inside the
functions that need them.
"""
