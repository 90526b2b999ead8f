"""REST transport: TF Serving's JSON API over one keep-alive HTTP connection (http.client, no
extra dependency). One RestTransport (one Client) per thread; it is not thread-safe."""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ingot.client.transport import Transport, VersionStatus, decode_strings
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.rest.client import dumps_request, predict_outputs
from ingot.protocol.rest.text import loads
from ingot.protocol.rest.values import BYTES_SUFFIX
from ingot.protocol.status import Code, ServingError, code_from_http_status


class RestTransport(Transport):
    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        super().__init__(timeout_s=timeout_s)
        parts = urlsplit(url)
        if not parts.hostname:
            raise ServingError(Code.INVALID_ARGUMENT, f"no host in server URL {url!r}")
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None
        self._output_names: dict[tuple, list[str]] = {}

    # -- HTTP

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        """One HTTP exchange; JSON answer or ServingError (UNAVAILABLE for connection trouble,
        so it is retried)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):  # a stale keep-alive connection gets one silent reconnect
            conn = self._connection()
            try:
                conn.request(method, self._prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                self._record_served(response.getheaders())
                break
            except TimeoutError:
                self.close()
                raise ServingError(Code.DEADLINE_EXCEEDED, f"no answer from {self.url} within {self.timeout_s}s") from None
            except (ConnectionError, http.client.HTTPException, OSError) as err:
                self.close()
                if attempt == 2 or not isinstance(err, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)):
                    raise ServingError(Code.UNAVAILABLE, f"cannot reach {self.url}: {err}") from None
        if response.status != 200:
            try:
                message = loads(payload)["error"]
            except (ValueError, KeyError, TypeError):
                message = payload.decode("utf-8", errors="replace")[:500] or response.reason
            raise ServingError(code_from_http_status(response.status), message, http_status=response.status)
        try:
            return loads(payload)
        except ValueError:
            raise ServingError(Code.UNKNOWN, f"the server at {self.url} answered with invalid JSON") from None

    # -- API

    def predict(self, model: str, version: int | None, label: str | None, signature_name: str,
                 inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        body = dumps_request(signature_name, inputs)
        answer = self.request("POST", _spec(model, version, label).path(":predict"), body)
        decoded = predict_outputs(answer, lambda: self._signature_outputs(model, version, label, signature_name)[0])
        if decoded is None:
            raise ServingError(Code.UNKNOWN, f"predict answer has no 'outputs': {str(answer)[:200]}")
        return {name: value if name.endswith(BYTES_SUFFIX) else decode_strings(value) for name, value in decoded.items()}

    def _signature_outputs(self, model: str, version: int | None, label: str | None, signature: str) -> list[str]:
        """A single-output signature's answer is unnamed in TF Serving's JSON; its name comes
        from the metadata (cached)."""
        key = (model, version, label, signature)
        if key not in self._output_names:
            meta = self.metadata(model, version, label)
            sig = meta["metadata"]["signature_def"]["signature_def"][signature]
            self._output_names[key] = sorted(sig.get("outputs", {}))
        return self._output_names[key]

    def metadata(self, model: str, version: int | None, label: str | None) -> dict:
        return self.request("GET", _spec(model, version, label).path("/metadata"))

    def status(self, model: str, version: int | None, label: str | None) -> list[VersionStatus]:
        answer = self.request("GET", _spec(model, version, label).path())
        return [
            VersionStatus(
                version=int(entry.get("version", 0)),
                state=str(entry.get("state", "UNKNOWN")),
                error_code=str(entry.get("status", {}).get("error_code", "OK")),
                error_message=str(entry.get("status", {}).get("error_message", "")),
            )
            for entry in answer.get("model_version_status", [])
        ]

    def list_models(self) -> list[dict]:
        """Ingot's server only (TF Serving has no model listing)."""
        return self.request("GET", "/ingot/models")["models"]


def _spec(model: str, version: int | None, label: str | None) -> ModelSpec:
    return ModelSpec(model, version, label or None)
