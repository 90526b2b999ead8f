"""TF Serving's gRPC API (PredictionService, ModelService) on grpc.aio, with the generated
servicer base classes from tensorflow-serving-api, so the official stubs are the client."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from ingot.errors import ConfigError
from ingot.serving.config import resolve_base_paths, validate_model_server_config
from ingot.serving.core import ServingCore
from ingot.serving.servable import check_input_names
from ingot.serving.status import Code, ServingError, invalid_argument
from ingot.serving.tensors import array_from_proto, array_to_proto

log = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"
MAX_MESSAGE = 1024  # TF Serving truncates error messages at 1 KiB


def grpc_code(code: Code) -> grpc.StatusCode:
    for status in grpc.StatusCode:
        if status.value[0] == int(code):
            return status
    return grpc.StatusCode.UNKNOWN


def _fail(context: grpc.aio.ServicerContext, err: ServingError) -> None:
    message = err.message if len(err.message) <= MAX_MESSAGE else err.message[:MAX_MESSAGE] + "...TRUNCATED"
    context.set_code(grpc_code(err.code))
    context.set_details(message)


def _model_spec_args(spec: Any) -> tuple[str, int | None, str | None]:
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None
    return spec.name, version, label


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServingCore) -> None:
        self.core = core

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        core = self.core
        with core.track() as tracking:
            try:
                response = await self._predict(request, context)
                servable_version = response.model_spec.version.value
                status_name = "OK"
            except ServingError as err:
                _fail(context, err)
                response, servable_version, status_name = predict_pb2.PredictResponse(), None, err.code.name
            except Exception as err:
                log.exception("unexpected error in Predict")
                _fail(context, ServingError(Code.INTERNAL, f"internal error: {type(err).__name__}: {err}"))
                response, servable_version, status_name = predict_pb2.PredictResponse(), None, "INTERNAL"
            name = request.model_spec.name
            core.metrics.record_request(name, servable_version, status_name)
            if status_name == "OK":
                core.metrics.record_latency(name, servable_version, "Predict", "GRPC", tracking.elapsed)
            return response

    async def _predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        core = self.core
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        name, version, label = _model_spec_args(request.model_spec)
        servable = core.resolve(name, version, label)
        signature = servable.signature(request.model_spec.signature_name)
        sent = {k: v for k, v in request.inputs.items()}
        check_input_names(signature, sent)  # before any conversion
        inputs = {
            k: array_from_proto(k, v, signature.inputs[k], max_elements=core.limits.max_elements)
            for k, v in sent.items()
        }
        wanted = list(request.output_filter) or list(signature.outputs)
        seen: set[str] = set()
        for alias in wanted:
            if alias not in signature.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                    f"the set {{{','.join(sorted(signature.outputs))}}}."
                )
            if alias in seen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        outputs, servable = await core.run(servable, signature.name, inputs, context.time_remaining(),
                                           model_spec=(name, version, label))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.name
        for alias in wanted:
            array_to_proto(outputs[alias], response.outputs[alias])
        return response

    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            if not request.metadata_field:
                raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != SIGNATURE_DEF_FIELD:
                    raise invalid_argument(f"Metadata field {field} is not supported")
            servable = self.core.manager.resolve(*_model_spec_args(request.model_spec))
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for sig_name, sig_def in servable.signature_defs.items():
                sig_map.signature_def[sig_name].CopyFrom(sig_def)
            response.metadata[SIGNATURE_DEF_FIELD].Pack(sig_map)
            return response
        except ServingError as err:
            _fail(context, err)
            return get_model_metadata_pb2.GetModelMetadataResponse()

    async def _unsupported(self, request: Any, context: grpc.aio.ServicerContext, what: str, empty: Any) -> Any:
        _fail(context, ServingError(
            Code.UNIMPLEMENTED,
            f"{what} is not supported by Ingot's model server; use Predict (the image signatures "
            "return probabilities and class ids)",
        ))
        return empty

    async def Classify(self, request, context):
        from tensorflow_serving.apis import classification_pb2
        return await self._unsupported(request, context, "Classify", classification_pb2.ClassificationResponse())

    async def Regress(self, request, context):
        from tensorflow_serving.apis import regression_pb2
        return await self._unsupported(request, context, "Regress", regression_pb2.RegressionResponse())

    async def MultiInference(self, request, context):
        from tensorflow_serving.apis import inference_pb2
        return await self._unsupported(request, context, "MultiInference", inference_pb2.MultiInferenceResponse())


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServingCore) -> None:
        self.core = core

    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        response = get_model_status_pb2.GetModelStatusResponse()
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            name, version, label = _model_spec_args(request.model_spec)
            for s in self.core.manager.status(name, version, label):
                entry = response.model_version_status.add()
                entry.version = s.version
                entry.state = int(s.state)
                entry.status.error_code = int(s.error_code)
                entry.status.error_message = s.error_message
            return response
        except ServingError as err:
            _fail(context, err)
            return get_model_status_pb2.GetModelStatusResponse()

    async def HandleReloadConfigRequest(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        response = model_management_pb2.ReloadConfigResponse()
        try:
            config = request.config
            if config.WhichOneof("config") != "model_config_list":
                raise invalid_argument(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                    "ModelConfigList is currently supported"
                )
            try:
                validate_model_server_config(config, source="ReloadConfigRequest")
            except ConfigError as err:
                raise invalid_argument(str(err)) from None
            from pathlib import Path

            config = type(config).FromString(config.SerializeToString())
            resolve_base_paths(config, relative_to=Path.cwd())
            log.info("reloading model config:\n%s", text_format.MessageToString(config))
            await asyncio.to_thread(self.core.manager.reload_config, config)
        except ServingError as err:
            response.status.error_code = int(err.code)
            response.status.error_message = err.message
            _fail(context, err)
            return response
        response.status.error_code = 0
        return response


def add_services(server: grpc.aio.Server, core: ServingCore) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(core), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core), server)
