"""The client API shared by the REST and gRPC transports.

Only TF Serving's standard API is used (predict, metadata, status), so the same client works
against Ingot's local server and against the official TensorFlow Serving image. A `Client` wraps
one transport (ingot.client.transport: REST or gRPC, one call each); retries with exponential
backoff on UNAVAILABLE (a full batch queue, a server starting or draining, a refused connection)
live here once.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ingot.client.transport import ServedBy, Transport, VersionStatus, as_text
from ingot.errors import ConfigError
from ingot.protocol.signatures import (
    BYTES_INPUT,
    CLASS_IDS,
    CLASS_NAMES,
    IMAGES_INPUT,
    PROBABILITIES,
    SERVING_BYTES,
    SERVING_DEFAULT,
)
from ingot.protocol.status import RETRYABLE, Code, ServingError

T = TypeVar("T")



@dataclass(frozen=True)
class Prediction:
    """One image's answer under Ingot's signature contract."""

    class_id: int
    class_name: str
    confidence: float
    probabilities: np.ndarray
    # Through an Ingot gateway: the request and its feedback key (for feedback), the variant and
    # version that answered.
    request_id: str | None = None
    row: int = 0
    variant: str | None = None
    model_version: int | None = None
    feedback_key: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # first try + 3 retries
    backoff_s: float = 0.05
    max_backoff_s: float = 2.0

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number `attempt` (1-based)."""
        ceiling = min(self.max_backoff_s, self.backoff_s * (2 ** (attempt - 1)))
        return random.uniform(0, ceiling)


class Client:
    """Use `Client.connect(url)`: http(s)://host:8501 for REST, grpc://host:8500 for gRPC."""

    def __init__(self, transport: Transport, *, retry: RetryPolicy = RetryPolicy()) -> None:
        self.transport = transport
        self.retry = retry

    @property
    def timeout_s(self) -> float:
        return self.transport.timeout_s

    @staticmethod
    def connect(url: str, *, timeout_s: float = 10.0, retry: RetryPolicy | None = None) -> Client:
        retry = retry or RetryPolicy()
        transport: Transport
        if url.startswith(("http://", "https://")):
            from ingot.client.rest import RestTransport

            transport = RestTransport(url, timeout_s=timeout_s)
        elif url.startswith("grpc://"):
            from ingot.client.grpc import GrpcTransport  # tensorflow-serving-api: only when used

            transport = GrpcTransport(url[len("grpc://"):], timeout_s=timeout_s)
        else:
            raise ConfigError(
                f"server URL {url!r} must start with http:// or https:// (REST, e.g. http://localhost:8501) "
                "or grpc:// (gRPC, e.g. grpc://localhost:8500)"
            )
        return Client(transport, retry=retry)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- retries

    def _with_retries(self, call: Callable[[], T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except ServingError as err:
                if err.code not in RETRYABLE or attempt >= self.retry.attempts:
                    raise
                time.sleep(self.retry.delay(attempt))

    # -- public API

    def predict(
        self,
        inputs: Mapping[str, np.ndarray] | np.ndarray,
        *,
        model: str,
        version: int | None = None,
        label: str | None = None,
        signature_name: str = SERVING_DEFAULT,
        input_name: str = IMAGES_INPUT,
    ) -> dict[str, np.ndarray]:
        """Run a signature; a bare array is sent as `input_name`. Returns every output by name."""
        named = dict(inputs) if isinstance(inputs, Mapping) else {input_name: np.asarray(inputs)}
        return self._with_retries(lambda: self.transport.predict(model, version, label, signature_name, named))

    def metadata(self, model: str, *, version: int | None = None, label: str | None = None) -> dict:
        """GetModelMetadata as TF Serving's REST API shapes it: {"model_spec", "metadata"}."""
        return self._with_retries(lambda: self.transport.metadata(model, version, label))

    def status(self, model: str, *, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        return self._with_retries(lambda: self.transport.status(model, version, label))

    def list_models(self) -> list[dict]:
        """Ingot's server over REST only (TF Serving has no model listing)."""
        return self.transport.list_models()

    @property
    def last_served(self) -> ServedBy:
        """Request id, variant and model version of this thread's last answer (an Ingot gateway's
        response headers / gRPC initial metadata; empty fields elsewhere)."""
        return self.transport.last_served

    def feedback(self, request_id: str | Prediction, label: str | int, *, row: int = 0, token: str | None = None,
                 feedback_key: str | None = None, gateway_url: str | None = None) -> dict:
        """Send the true label of a gateway-logged prediction (POST /v1/feedback, over REST:
        `gateway_url` defaults to this client's URL when it speaks REST).

        `request_id` is the Prediction itself (its request id, row and feedback key are used) or
        its request id, with `row` and the answer's `feedback_key` (x-ingot-feedback-key). A holder of the
        gateway's feedback `token` may leave the key out."""
        from ingot.client.feedback import send_feedback

        url = gateway_url or getattr(self.transport, "url", None)
        if not url:
            raise ConfigError("feedback goes over the gateway's REST port: pass gateway_url='http://host:8501'")
        if isinstance(request_id, Prediction):
            answer = request_id
            if not answer.request_id:
                raise ConfigError("this prediction did not come through an Ingot gateway (no request id to label)")
            request_id, row, feedback_key = answer.request_id, answer.row, feedback_key or answer.feedback_key
        return send_feedback(url, request_id, label, row=row, token=token, feedback_key=feedback_key,
                             timeout_s=self.timeout_s)[0]

    def classify(
        self,
        images: Sequence[Any],
        *,
        model: str,
        version: int | None = None,
        label: str | None = None,
    ) -> list[Prediction]:
        """Classify uint8 arrays ([H,W,3] or a [N,H,W,3] batch; serving_default) and encoded images
        (bytes or file paths; serving_bytes), in the order given, one request per kind."""
        arrays: list[tuple[int, np.ndarray]] = []
        encoded: list[tuple[int, bytes]] = []
        for index, image in enumerate(_expand(images)):
            if isinstance(image, np.ndarray):
                arrays.append((index, _as_uint8_image(image)))
            else:
                encoded.append((index, read_image_bytes(image)))
        results: dict[int, Prediction] = {}
        if arrays:
            groups: dict[tuple, list[tuple[int, np.ndarray]]] = {}
            for index, arr in arrays:
                groups.setdefault(arr.shape, []).append((index, arr))
            for group in groups.values():
                batch = np.stack([a for _, a in group])
                outputs = self.predict({IMAGES_INPUT: batch}, model=model, version=version, label=label,
                                       signature_name=SERVING_DEFAULT)
                served = self.transport.last_served
                for row, (index, _) in enumerate(group):
                    results[index] = _prediction(outputs, row, served)
        if encoded:
            values = np.empty(len(encoded), dtype=object)
            values[:] = [data for _, data in encoded]
            outputs = self.predict({BYTES_INPUT: values}, model=model, version=version, label=label,
                                   signature_name=SERVING_BYTES)
            served = self.transport.last_served
            for row, (index, _) in enumerate(encoded):
                results[index] = _prediction(outputs, row, served)
        return [results[i] for i in range(len(results))]


def _expand(images: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    if isinstance(images, np.ndarray):
        images = [images]
    for image in images:
        if isinstance(image, np.ndarray) and image.ndim == 4:
            out.extend(image)
        else:
            out.append(image)
    return out


def _as_uint8_image(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ConfigError(f"an image array must be [H, W, 3] (or [H, W] grayscale), got shape {list(image.shape)}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) or image.min() < 0 or image.max() > 255:
            raise ConfigError(
                f"image arrays must hold uint8 pixel values 0..255, got dtype {image.dtype}; "
                "convert with np.clip(x, 0, 255).astype(np.uint8)"
            )
        image = image.astype(np.uint8)
    return image


def read_image_bytes(image: Any) -> bytes:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such image file") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a directory, not an image file") from None
        except OSError as err:
            raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    raise ConfigError(f"cannot classify a {type(image).__name__}; give uint8 arrays, encoded bytes or file paths")


def _prediction(outputs: Mapping[str, np.ndarray], row: int, served: ServedBy | None = None) -> Prediction:
    missing = [k for k in (PROBABILITIES, CLASS_IDS) if k not in outputs]
    if missing:
        raise ServingError(
            Code.FAILED_PRECONDITION,
            f"the model's outputs {sorted(outputs)} lack {missing}; classify needs Ingot's signature "
            "contract (probabilities, class_ids, class_names)",
        )
    probabilities = np.asarray(outputs[PROBABILITIES][row], dtype=np.float32)
    class_id = int(outputs[CLASS_IDS][row])
    names = outputs.get(CLASS_NAMES)
    class_name = as_text(names[row]) if names is not None else str(class_id)
    served = served or ServedBy()
    return Prediction(class_id, class_name, float(probabilities[class_id]), probabilities,
                      request_id=served.request_id, row=row, variant=served.variant,
                      model_version=served.model_version, feedback_key=served.feedback_key)
