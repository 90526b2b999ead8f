"""What a client transport does: one TF Serving call over one protocol, no retries (the `Client`
in ingot.client.base retries). Transports depend on this module and ingot.protocol only, so the
client API can build them without an import cycle."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ingot.protocol.status import Code, ServingError


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str  # START | LOADING | AVAILABLE | UNLOADING | END
    error_code: str  # OK, NOT_FOUND, ...
    error_message: str


class Transport(abc.ABC):
    def __init__(self, *, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s

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

    def close(self) -> None:
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
