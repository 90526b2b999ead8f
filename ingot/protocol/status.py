"""TF Serving's status codes and their HTTP and gRPC mappings.

Every error the server returns is a `ServingError` carrying one of TensorFlow's canonical codes, so
the REST layer (`{"error": ...}` with TF Serving's HTTP status) and the gRPC layer (the same code as
a grpc.StatusCode) answer alike. Light on purpose (grpc loads only in the gRPC helpers): the client
and the gateway import it too.
"""

from __future__ import annotations

import enum
from typing import Any

from ingot.errors import IngotError


class Code(enum.IntEnum):
    """tensorflow/core/protobuf/error_codes.proto (the same numbers as grpc.StatusCode)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# TF Serving's http_server.cc ToHTTPStatusCode.
HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}

# Retrying these can succeed: the server was busy, starting or shutting down.
RETRYABLE = frozenset({Code.UNAVAILABLE})


class ServingError(IngotError):
    """An error with a canonical code; `http_status` overrides the mapping where HTTP has a
    better word (413 for a body over the size limit)."""

    def __init__(self, code: Code, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = Code(code)
        self.message = message
        self.http_status = http_status if http_status is not None else HTTP_STATUS.get(self.code, 500)

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"

    def __reduce__(self) -> tuple:
        """Picklable (errors come back from the request-parsing worker processes)."""
        return (ServingError, (self.code, self.message), {"http_status": self.http_status})


def invalid_argument(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(Code.NOT_FOUND, message)


def unavailable(message: str) -> ServingError:
    return ServingError(Code.UNAVAILABLE, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(Code.FAILED_PRECONDITION, message)


def grpc_status_code(code: Code) -> Any:
    """The grpc.StatusCode with the same number."""
    import grpc

    for status in grpc.StatusCode:
        if status.value[0] == int(code):
            return status
    return grpc.StatusCode.UNKNOWN


def code_from_grpc(status: Any) -> Code:
    """A grpc.StatusCode (or anything without a known number) → Code."""
    try:
        return Code(status.value[0])
    except (ValueError, AttributeError, TypeError, IndexError):
        return Code.UNKNOWN


def code_from_http_status(status: int) -> Code:
    """Best inverse of HTTP_STATUS, for clients that only see the HTTP status."""
    for code, http in HTTP_STATUS.items():
        if http == status and code not in (Code.FAILED_PRECONDITION, Code.OUT_OF_RANGE, Code.ABORTED, Code.DATA_LOSS, Code.INTERNAL):
            return code
    if status == 413:
        return Code.RESOURCE_EXHAUSTED
    return Code.UNKNOWN if status >= 500 else Code.INVALID_ARGUMENT
