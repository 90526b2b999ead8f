"""gRPC transport: tensorflow-serving-api's PredictionService and ModelService stubs (the same
ones any TF Serving client uses). Thread-safe: one channel can serve many threads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np

from ingot.client.transport import Transport, VersionStatus, decode_strings
from ingot.protocol.documents import SIGNATURE_DEF_FIELD
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.rest.values import BYTES_SUFFIX
from ingot.protocol.status import Code, ServingError, code_from_grpc
from ingot.protocol.tensors import array_to_proto, outputs_from_proto

MAX_MESSAGE = 64 << 20


def _error(err: grpc.RpcError) -> ServingError:
    mapped = code_from_grpc(err.code() if hasattr(err, "code") else None)
    details = err.details() if hasattr(err, "details") else str(err)
    return ServingError(mapped, details or mapped.name)


class GrpcTransport(Transport):
    def __init__(self, target: str, *, timeout_s: float = 10.0) -> None:
        super().__init__(timeout_s=timeout_s)
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.target = target.rstrip("/")
        self._channel = grpc.insecure_channel(self.target, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ])
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            response, call = method.with_call(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            if hasattr(err, "initial_metadata"):
                self._record_served(err.initial_metadata() or ())
            raise _error(err) from None
        self._record_served(call.initial_metadata() or ())
        return response

    def predict_request(self, model: str, version: int | None, label: str | None, signature_name: str,
                        inputs: Mapping[str, np.ndarray]) -> Any:
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        ModelSpec(model, version, label or None).fill(request.model_spec, signature_name)
        for name, value in inputs.items():
            array_to_proto(np.asarray(value), request.inputs[name])
        return request

    def predict(self, model: str, version: int | None, label: str | None, signature_name: str,
                 inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = self.predict_request(model, version, label, signature_name, inputs)
        response = self._call(self.prediction.Predict, request)
        outputs = outputs_from_proto(response.outputs, max_elements=1 << 31)
        return {name: value if name.endswith(BYTES_SUFFIX) else decode_strings(value) for name, value in outputs.items()}

    def metadata(self, model: str, version: int | None, label: str | None) -> dict:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        ModelSpec(model, version, label or None).fill(request.model_spec)
        request.metadata_field.append(SIGNATURE_DEF_FIELD)
        response = self._call(self.prediction.GetModelMetadata, request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(sig_map)
        opts = dict(always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **opts),
            "metadata": {"signature_def": json_format.MessageToDict(sig_map, **opts)},
        }

    def status(self, model: str, version: int | None, label: str | None) -> list[VersionStatus]:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        ModelSpec(model, version, label or None).fill(request.model_spec)
        response = self._call(self.models.GetModelStatus, request)
        return [
            VersionStatus(
                version=int(s.version),
                state=get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                error_code=Code(s.status.error_code).name if s.status.error_code in Code._value2member_map_ else str(s.status.error_code),
                error_message=s.status.error_message,
            )
            for s in response.model_version_status
        ]
