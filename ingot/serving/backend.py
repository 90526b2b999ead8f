"""What the REST and gRPC front ends ask to answer a request: the backend interface.

The front ends (`rest.RestApi`, `grpc_service`) own everything about the wire: routes, body and
message limits, JSON and TensorProto decoding and their checks against the signature, error bodies
and codes, draining, in-flight tracking and request metrics. A `Backend` owns what answers:
`LocalBackend` (ingot.serving.local: the model manager and batching, what `ingot serve` runs) or
the gateway's upstream backend (forwarding to TF Serving servers). So both get the same front end.

Flow of a predict: the front end calls `resolve(ctx, spec)` and gets a `Target` (a loaded version,
or an upstream chosen for this request with its signatures fetched and cached), decodes and checks
the inputs against `target.signature(...)`, then calls `predict(ctx, target, call)`. The call
carries the decoded inputs AND what came on the wire (the raw REST body, or the gRPC
PredictRequest), so a forwarding backend can send the caller's bytes on unchanged. The result holds
the decoded outputs (the local backend's answer; a forwarding backend's, for logging) and, when
the answer is ready-made, a `Forwarded` (REST status and body, or a gRPC response message) that
the front end returns unchanged. Metadata and model status go through the backend the same way.

`ctx` is per request: the incoming headers (REST) or invocation metadata (gRPC), names lower-cased;
`ctx.response_headers` is what the backend wants sent back (REST headers, gRPC initial metadata),
e.g. `x-ingot-request-id`; `ctx.state` is the backend's to keep what it knows about the request
between its calls (and for the front end's hooks, `FrontEnd.on_predict_error`). A `ServingError` raised by a backend maps to TF Serving's HTTP status
and gRPC code like any other.

A minimal backend (a fixed answer, e.g. for a test):

    class Constant(Backend):
        async def resolve(self, ctx, spec):
            return FixedTarget(spec.name, 1, {"serving_default": SIGNATURE})

        async def predict(self, ctx, target, call):
            ctx.response_headers[headers.VARIANT] = "champion"
            batch = len(next(iter(call.inputs.values())))
            return PredictResult({"scores": np.zeros((batch, 3), np.float32)}, target.name, 1,
                                 call.signature_name)

        async def metadata(self, ctx, spec):
            raise not_found(f"no metadata for {spec.name}")

        async def status(self, ctx, spec):
            return StatusResult([])
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ingot.protocol.documents import VersionState
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.status import Code, ServingError
from ingot.protocol.tensors import SignatureSpec, find_signature

REST = "REST"
GRPC = "GRPC"


@dataclass
class RequestContext:
    """One request as the backend sees it besides its payload."""

    protocol: str  # REST | GRPC
    headers: Mapping[str, str]  # incoming headers / invocation metadata, names lower-cased
    timeout_s: float | None = None  # what the caller allows (gRPC deadline, REST server default)
    response_headers: dict[str, str] = field(default_factory=dict)  # set by the backend
    trailing: set[str] = field(default_factory=set)  # response_headers also sent as gRPC trailing metadata
    started: float = field(default_factory=time.perf_counter)  # when the request arrived
    state: Any = None  # the backend's own record of this request, kept between its calls


class Target(Protocol):
    """What `resolve` chose. `signature` raises TF Serving's error for an unknown name:
    INVALID_ARGUMENT over REST, FAILED_PRECONDITION over gRPC."""

    name: str
    version: int | None
    signatures: Mapping[str, SignatureSpec]  # every signature, by name

    def signature(self, name: str, *, rest: bool = False) -> SignatureSpec: ...


@dataclass(frozen=True)
class FixedTarget:
    """A Target over a fixed signature map (what a forwarding backend builds from metadata)."""

    name: str
    version: int | None
    signatures: Mapping[str, SignatureSpec]

    def signature(self, name: str, *, rest: bool = False) -> SignatureSpec:
        return find_signature(self.signatures, name, rest=rest)


@dataclass
class Forwarded:
    """A ready answer, returned to the caller unchanged: REST status and body, or a gRPC message."""

    status: int = 200
    body: bytes | None = None
    message: Any = None


@dataclass
class PredictCall:
    spec: ModelSpec  # as the request named it
    signature_name: str  # as sent ("" means serving_default)
    inputs: dict[str, np.ndarray]  # decoded and checked against the signature
    row_format: bool = False  # REST: "instances" (True) or "inputs"
    body: bytes | None = None  # REST: the JSON body as received (after Content-Encoding is undone)
    grpc_request: Any = None  # gRPC: the PredictRequest as received
    output_filter: Sequence[str] = ()  # gRPC: the outputs asked for (empty: all)


@dataclass
class PredictResult:
    outputs: Mapping[str, np.ndarray] | None  # decoded outputs (None when not known)
    model_name: str
    version: int | None  # the version that answered
    signature_name: str
    forwarded: Forwarded | None = None


@dataclass
class MetadataResult:
    name: str = ""
    version: int | None = None
    signature_defs: Mapping[str, Any] = field(default_factory=dict)  # name -> SignatureDef proto
    forwarded: Forwarded | None = None


@dataclass
class StatusResult:
    statuses: Sequence[VersionState] = ()
    forwarded: Forwarded | None = None


class Backend(abc.ABC):
    """Answers requests for the front ends; see the module docstring."""

    # Whether `PredictCall.grpc_request` must be the whole message as received (a forwarding
    # backend sends it on). When False, the gRPC front end keeps the inputs' tensor_content out
    # of the message and decodes the arrays in place from the received buffer.
    forwards_grpc_request: bool = True

    @abc.abstractmethod
    async def resolve(self, ctx: RequestContext, spec: ModelSpec) -> Target:
        """The model version (or upstream) that will answer this predict request."""

    @abc.abstractmethod
    async def predict(self, ctx: RequestContext, target: Target, call: PredictCall) -> PredictResult:
        """Run the prediction on what `resolve` returned."""

    @abc.abstractmethod
    async def metadata(self, ctx: RequestContext, spec: ModelSpec) -> MetadataResult:
        """GetModelMetadata (signature defs of the resolved version)."""

    @abc.abstractmethod
    async def status(self, ctx: RequestContext, spec: ModelSpec) -> StatusResult:
        """GetModelStatus."""

    def readiness(self) -> dict[str, Any]:
        """{"ready": bool, ...} for /readyz."""
        return {"ready": True}

    def list_models(self) -> list[dict[str, Any]]:
        """[{"name", "available_versions", "labels"}] for /ingot/models (an Ingot extension)."""
        return []

    async def reload_config(self, config: Any, *, peer: str | None = None) -> None:
        """ModelService.HandleReloadConfigRequest with a ModelServerConfig, from `peer` (gRPC's
        peer string, e.g. `ipv4:127.0.0.1:51234`)."""
        raise ServingError(Code.UNIMPLEMENTED, "this server does not take model config reloads")
