"""TF Serving's gRPC API (PredictionService, ModelService) on grpc.aio, with the generated
servicer base classes from tensorflow-serving-api, so the official stubs are the client. The
handlers decode and check requests, then ask the backend (ingot.serving.backend)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from ingot.protocol.documents import SIGNATURE_DEF_FIELD, metadata_response, status_response
from ingot.protocol.images import check_encoded_images
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.predict_wire import LeanPredictRequest, parse_predict_request
from ingot.protocol.status import Code, ServingError, grpc_status_code, invalid_argument
from ingot.protocol.tensors import (
    VALUE_CHUNK,
    DecodeBudget,
    array_from_proto,
    array_to_proto,
    check_input_names,
    repeated_value_count,
)
from ingot.serving.backend import GRPC, PredictCall, RequestContext
from ingot.serving.frontend import FrontEnd

log = logging.getLogger(__name__)

PREDICT_METHOD = "tensorflow.serving.PredictionService.Predict"
MAX_MESSAGE = 1024  # TF Serving truncates error messages at 1 KiB
IMAGES_INLINE = 8


def _fail(context: grpc.aio.ServicerContext, err: ServingError) -> None:
    message = err.message if len(err.message) <= MAX_MESSAGE else err.message[:MAX_MESSAGE] + "...TRUNCATED"
    context.set_code(grpc_status_code(err.code))
    context.set_details(message)


def _model_spec(spec: Any) -> ModelSpec:
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None
    return ModelSpec(spec.name, version, label).check_wire()


def _context(front: FrontEnd, context: grpc.aio.ServicerContext) -> RequestContext:
    metadata = context.invocation_metadata() or ()
    headers = {str(k).lower(): v if isinstance(v, str) else v.decode("latin-1") for k, v in metadata}
    return RequestContext(GRPC, headers, front.timeout_s(context.time_remaining()))


async def _send_headers(context: grpc.aio.ServicerContext, ctx: RequestContext) -> None:
    """The backend's response headers as initial metadata (before the response or error); those it
    names in `ctx.trailing` also as trailing metadata, where clients that read only the status see them."""
    if ctx.response_headers:
        await context.send_initial_metadata(tuple((k.lower(), v) for k, v in ctx.response_headers.items()))
    trailing = tuple((k.lower(), ctx.response_headers[k]) for k in sorted(ctx.trailing) if k in ctx.response_headers)
    if trailing:
        context.set_trailing_metadata(trailing)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, front: FrontEnd) -> None:
        self.front = front
        self.backend = front.backend

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        front = self.front
        ctx = _context(front, context)
        contents: dict[str, memoryview] = {}
        if isinstance(request, LeanPredictRequest):
            request, contents = request.message, request.contents
        with front.track() as tracking:
            try:
                response, servable_version = await self._predict(request, ctx, contents)
                status_name = "OK"
            except ServingError as err:
                _fail(context, err)
                response, servable_version, status_name = predict_pb2.PredictResponse(), None, err.code.name
            except Exception as err:
                log.exception("unexpected error in Predict")
                _fail(context, ServingError(Code.INTERNAL, f"internal error: {type(err).__name__}: {err}"))
                response, servable_version, status_name = predict_pb2.PredictResponse(), None, "INTERNAL"
            await _send_headers(context, ctx)
            name = request.model_spec.name
            front.metrics.record_request(name, servable_version, status_name)
            if status_name == "OK":
                front.metrics.record_latency(name, servable_version, "Predict", "GRPC", tracking.elapsed)
            else:
                front.predict_failed(ctx, status_name)
            return response

    async def _predict(self, request: Any, ctx: RequestContext, contents: dict[str, memoryview]
                       ) -> tuple[Any, int | None]:
        front = self.front
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        spec = _model_spec(request.model_spec)
        front.check_accepting()
        target = await self.backend.resolve(ctx, spec)
        signature = target.signature(request.model_spec.signature_name)
        sent = {k: v for k, v in request.inputs.items()}
        check_input_names(signature, sent)  # before any conversion
        limits = front.limits
        budget = DecodeBudget(limits.max_decoded_bytes)

        def decode() -> dict:
            return {
                k: array_from_proto(k, v, signature.inputs[k], max_elements=limits.max_elements,
                                    max_rows=limits.max_batch_rows, budget=budget, content=contents.get(k))
                for k, v in sent.items()
            }

        # Long value lists convert in a thread, slice by slice, so the event loop keeps running.
        long_lists = sum(repeated_value_count(v) for v in sent.values()) > VALUE_CHUNK
        inputs = await asyncio.to_thread(decode) if long_lists else decode()
        encoded = sum(len(v.string_val) for v in sent.values())
        if encoded > IMAGES_INLINE:  # reading many image headers: off the event loop
            await asyncio.to_thread(check_encoded_images, inputs, limits.max_image_pixels)
        elif encoded:
            check_encoded_images(inputs, limits.max_image_pixels)
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
        call = PredictCall(spec, request.model_spec.signature_name, inputs, grpc_request=request,
                           output_filter=list(request.output_filter))
        result = await self.backend.predict(ctx, target, call)
        if result.forwarded is not None and result.forwarded.message is not None:
            return result.forwarded.message, result.version
        response = predict_pb2.PredictResponse()
        ModelSpec(result.model_name, result.version or 0).fill(response.model_spec, signature.name)
        outputs = result.outputs or {}
        for alias in wanted:
            array_to_proto(outputs[alias], response.outputs[alias])
        return response, result.version

    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ctx = _context(self.front, context)
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            if not request.metadata_field:
                raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != SIGNATURE_DEF_FIELD:
                    raise invalid_argument(f"Metadata field {field} is not supported")
            meta = await self.backend.metadata(ctx, _model_spec(request.model_spec))
            await _send_headers(context, ctx)
            if meta.forwarded is not None and meta.forwarded.message is not None:
                return meta.forwarded.message
            return metadata_response(meta.name, meta.version or 0, meta.signature_defs)
        except ServingError as err:
            await _send_headers(context, ctx)
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
    def __init__(self, front: FrontEnd) -> None:
        self.front = front
        self.backend = front.backend

    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ctx = _context(self.front, context)
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            result = await self.backend.status(ctx, _model_spec(request.model_spec))
            await _send_headers(context, ctx)
            if result.forwarded is not None and result.forwarded.message is not None:
                return result.forwarded.message
            return status_response(result.statuses)
        except ServingError as err:
            await _send_headers(context, ctx)
            _fail(context, err)
            return get_model_status_pb2.GetModelStatusResponse()

    async def HandleReloadConfigRequest(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        response = model_management_pb2.ReloadConfigResponse()
        try:
            await self.backend.reload_config(request.config, peer=context.peer())
        except ServingError as err:
            response.status.error_code = int(err.code)
            response.status.error_message = err.message
            _fail(context, err)
            return response
        response.status.error_code = 0
        return response


class Undecodable:
    """What a request deserializer returns for bytes that are not the expected message, so the
    handler (not gRPC's framework, which would answer UNKNOWN) refuses it as INVALID_ARGUMENT."""

    def __init__(self, message_name: str, size: int, error: BaseException) -> None:
        self.message_name = message_name
        self.size = size
        self.error = error


def _lenient(message_class: Any, *, lean: bool = False) -> Any:
    """`lean`: a PredictRequest whose tensor bytes stay in the received buffer
    (ingot.protocol.predict_wire), for backends that do not forward the message."""
    parse = (lambda data: parse_predict_request(data, message_class)) if lean else message_class.FromString

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as err:  # DecodeError, RecursionError, ...
            return Undecodable(message_class.DESCRIPTOR.full_name, len(data), err)

    return deserialize


def _guarded(front: FrontEnd, method: Any, response_class: Any) -> Any:
    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            front.client_errors.warning("gRPC %s: %d request bytes are not a valid %s (%s)", context.peer(),
                                        request.size, request.message_name, type(request.error).__name__)
            _fail(context, invalid_argument(
                f"the request is not a valid {request.message_name} message: {str(request.error)[:200]}"))
            return response_class()
        return await method(request, context)

    return behavior


def _generic_handler(front: FrontEnd, servicer: Any, service: Any) -> grpc.GenericRpcHandler:
    """The service's methods as the generated add_*_to_server registers them, but with
    deserializers that never raise."""
    from google.protobuf.message_factory import GetMessageClass

    handlers = {}
    for method in service.methods:
        request_class = GetMessageClass(method.input_type)
        response_class = GetMessageClass(method.output_type)
        lean = method.full_name == PREDICT_METHOD and not front.backend.forwards_grpc_request
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _guarded(front, getattr(servicer, method.name), response_class),
            request_deserializer=_lenient(request_class, lean=lean),
            response_serializer=response_class.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def add_services(server: grpc.aio.Server, front: FrontEnd) -> None:
    """PredictionService and ModelService on `server`, answering through `front`."""
    from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

    prediction = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
    models = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"]
    server.add_generic_rpc_handlers((
        _generic_handler(front, PredictionServicer(front), prediction),
        _generic_handler(front, ModelServicer(front), models),
    ))
