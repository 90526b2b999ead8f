"""Model status and metadata answers, as TF Serving writes them: the gRPC messages and their REST
JSON (proto JSON with TF Serving's key spelling). Built from plain values, so the server (from its
loaded versions) and the gateway (from an upstream's answer) write the same documents."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ingot.protocol.model_spec import ModelSpec

SIGNATURE_DEF_FIELD = "signature_def"


class VersionState(Protocol):
    """One version's status: what GetModelStatus reports."""

    @property
    def version(self) -> int: ...

    @property
    def state(self) -> int:
        """tensorflow_serving.apis.get_model_status_pb2.ModelVersionStatus.State"""

    @property
    def error_code(self) -> int:
        """ingot.protocol.status.Code"""

    @property
    def error_message(self) -> str: ...


def status_response(statuses: Iterable[VersionState]) -> Any:
    """GetModelStatusResponse for these versions (newest first, as given)."""
    from tensorflow_serving.apis import get_model_status_pb2

    response = get_model_status_pb2.GetModelStatusResponse()
    for s in statuses:
        entry = response.model_version_status.add()
        entry.version = s.version
        entry.state = int(s.state)
        entry.status.error_code = int(s.error_code)
        entry.status.error_message = s.error_message
    return response


def status_json(statuses: Iterable[VersionState]) -> bytes:
    """GetModelStatusResponse as TF Serving prints it (proto JSON, json_name keys)."""
    from google.protobuf import json_format

    return json_format.MessageToJson(
        status_response(statuses), always_print_fields_with_no_presence=True
    ).encode()


def metadata_response(name: str, version: int, signature_defs: Mapping[str, Any]) -> Any:
    """GetModelMetadataResponse with the signature_def map packed, as TF Serving answers."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    response = get_model_metadata_pb2.GetModelMetadataResponse()
    ModelSpec(name, version).fill(response.model_spec)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(_signature_def_map(signature_defs))
    return response


def metadata_document(name: str, version: int, signature_defs: Mapping[str, Any]) -> dict:
    """{"model_spec": ..., "metadata": {"signature_def": ...}} with proto field names (REST)."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import model_pb2

    spec = ModelSpec(name, version).fill(model_pb2.ModelSpec())
    opts = dict(always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
    return {
        "model_spec": json_format.MessageToDict(spec, **opts),
        "metadata": {"signature_def": json_format.MessageToDict(_signature_def_map(signature_defs), **opts)},
    }


def _signature_def_map(signature_defs: Mapping[str, Any]) -> Any:
    from tensorflow_serving.apis import get_model_metadata_pb2

    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for sig_name, sig_def in signature_defs.items():
        sig_map.signature_def[sig_name].CopyFrom(sig_def)
    return sig_map
