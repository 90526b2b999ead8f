"""What a client transport does: one TF Serving call over one protocol, no retries (the `Client`
in ingot.client.base retries). Transports depend on this module and ingot.protocol only, so the
client API can build them without an import cycle."""

from __future__ import annotations

import abc
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingot.protocol import headers as wire
from ingot.protocol.status import Code, ServingError


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str  # START | LOADING | AVAILABLE | UNLOADING | END
    error_code: str  # OK, NOT_FOUND, ...
    error_message: str


@dataclass(frozen=True)
class ServedBy:
    """Who answered, as an Ingot gateway reports it (x-ingot-request-id, x-ingot-variant,
    x-ingot-model-version, x-ingot-feedback-key: what feedback gives back, x-ingot-client-request-id:
    the caller's own id echoed); fields are None when the server does not say (plain TF Serving)."""

    request_id: str | None = None
    variant: str | None = None
    model_version: int | None = None
    feedback_key: str | None = None
    client_request_id: str | None = None

    @staticmethod
    def from_headers(headers: Any) -> ServedBy:
        found = {str(k).lower(): v for k, v in headers}
        version = found.get(wire.MODEL_VERSION) or found.get(wire.REST_MODEL_VERSION.lower())
        return ServedBy(found.get(wire.REQUEST_ID), found.get(wire.VARIANT),
                        int(version) if version and str(version).isdigit() else None,
                        found.get(wire.FEEDBACK_KEY), found.get(wire.CLIENT_REQUEST_ID))


class Transport(abc.ABC):
    def __init__(self, *, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._served = threading.local()

    @property
    def last_served(self) -> ServedBy:
        """Who answered this thread's last call."""
        return getattr(self._served, "value", ServedBy())

    def _record_served(self, headers: Any) -> None:
        self._served.value = ServedBy.from_headers(headers)

    @abc.abstractmethod
    def predict(self, model: str, version: int | None, label: str | None, signature_name: str,
                inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the signature, by name."""

    @abc.abstractmethod
    def metadata(self, model: str, version: int | None, label: str | None) -> dict:
        """GetModelMetadata as TF Serving's REST API shapes it."""

    @abc.abstractmethod
    def status(self, model: str, version: int | None, label: str | None) -> list[VersionStatus]:
        """GetModelStatus, newest version first."""

    def list_models(self) -> list[dict]:
        """Ingot's server lists its models over REST; TF Serving cannot."""
        raise ServingError(Code.UNIMPLEMENTED, "this transport cannot list models")

    def close(self) -> None:  # noqa: B027 - optional hook: transports without connections keep this no-op
        pass


def as_text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def decode_strings(array: np.ndarray) -> np.ndarray:
    """bytes → str for string outputs, so both transports return the same values."""
    if array.dtype != object:
        return array
    out = np.empty(array.shape, dtype=object)
    out.ravel()[:] = [as_text(v) for v in array.ravel().tolist()]
    return out
