"""Forwarding one predict request to the chosen variant's upstream over the caller's protocol:
the caller's REST body or PredictRequest goes on unchanged but for the model spec, pinned to
the variant's version; the answer comes back unchanged, decoded only for the log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ingot.protocol import headers as wire
from ingot.protocol.rest.client import predict_outputs
from ingot.protocol.signatures import CLASS_IDS, CLASS_NAMES, PROBABILITIES
from ingot.protocol.status import Code, ServingError, code_from_grpc, code_from_http_status
from ingot.protocol.tensors import outputs_from_proto
from ingot.serving.backend import Forwarded, PredictCall

if TYPE_CHECKING:
    from ingot.gateway.choose import GatewayTarget

LOGGED_OUTPUTS = (PROBABILITIES, CLASS_IDS, CLASS_NAMES)


async def forward(target: GatewayTarget, call: PredictCall, timeout: float,
                  request_id: str | None) -> tuple[Forwarded, dict[str, np.ndarray] | None, str]:
    """(answer to return unchanged, decoded outputs for the log, status name). `request_id` goes
    upstream as x-ingot-request-id (None: a mirrored copy, sent without one)."""
    headers = {wire.REQUEST_ID: request_id} if request_id is not None else {}
    if call.grpc_request is None:
        try:
            status, body = await target.client.rest("POST", target.spec.path(":predict"), call.body, timeout, headers)
        except TimeoutError:
            raise ServingError(Code.DEADLINE_EXCEEDED, f"Deadline exceeded: the {target.variant} did not answer "
                               f"within {timeout * 1000:.0f} ms") from None
        outputs = rest_outputs(body) if status == 200 else None
        name = "OK" if status == 200 else code_from_http_status(status).name
        return Forwarded(status=status, body=body), outputs, name
    import grpc

    request = type(call.grpc_request)()
    request.CopyFrom(call.grpc_request)
    target.spec.fill(request.model_spec)
    try:
        response = await target.client.grpc(target.client.predictions.Predict, request, timeout,
                                            tuple(headers.items()))
    except grpc.aio.AioRpcError as err:
        raise ServingError(code_from_grpc(err.code()), err.details() or "") from None
    outputs = outputs_from_proto(response.outputs, names=LOGGED_OUTPUTS, max_elements=1 << 26)
    return Forwarded(message=response), outputs, "OK"


def rest_outputs(body: bytes) -> dict[str, np.ndarray] | None:
    """The logged outputs of a TF Serving REST predict answer (row or columnar form)."""
    import orjson

    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return predict_outputs(document, lambda: PROBABILITIES, LOGGED_OUTPUTS)


def down(variant: str, err: BaseException) -> ServingError:
    return ServingError(Code.UNAVAILABLE, f"the {variant} model server is unreachable: {err}")


def upstream_error(err: BaseException) -> ServingError:
    import grpc

    if isinstance(err, grpc.aio.AioRpcError):
        return ServingError(code_from_grpc(err.code()), err.details() or "")
    if isinstance(err, ServingError):
        return err
    return ServingError(Code.INTERNAL, f"upstream answered unexpectedly: {type(err).__name__}: {err}")


def grpc_error(err: Any) -> ServingError:
    """An upstream's gRPC error as the caller's."""
    return ServingError(code_from_grpc(err.code()), err.details() or "")
