"""REST transport: TF Serving's JSON API over one keep-alive HTTP connection (http.client, no
extra dependency). One RestClient per thread; it is not thread-safe."""

from __future__ import annotations

import base64
import http.client
import json
import socket
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

import numpy as np

from ingot.client.base import Client, RetryPolicy, VersionStatus, decode_strings
from ingot.serving.status import Code, ServingError, code_from_http_status

BYTES_SUFFIX = "_bytes"


class RestClient(Client):
    def __init__(self, url: str, *, timeout_s: float = 10.0, retry: RetryPolicy = RetryPolicy()) -> None:
        super().__init__(timeout_s=timeout_s, retry=retry)
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
                break
            except (socket.timeout, TimeoutError):
                self.close()
                raise ServingError(Code.DEADLINE_EXCEEDED, f"no answer from {self.url} within {self.timeout_s}s") from None
            except (ConnectionError, http.client.HTTPException, OSError) as err:
                self.close()
                if attempt == 2 or not isinstance(err, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)):
                    raise ServingError(Code.UNAVAILABLE, f"cannot reach {self.url}: {err}") from None
        if response.status != 200:
            try:
                message = json.loads(payload)["error"]
            except (ValueError, KeyError, TypeError):
                message = payload.decode("utf-8", errors="replace")[:500] or response.reason
            raise ServingError(code_from_http_status(response.status), message, http_status=response.status)
        try:
            return json.loads(payload)
        except ValueError:
            raise ServingError(Code.UNKNOWN, f"the server at {self.url} answered with invalid JSON") from None

    @staticmethod
    def _model_path(model: str, version: int | None, label: str | None) -> str:
        path = f"/v1/models/{quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label:
            path += f"/labels/{quote(label, safe='')}"
        return path

    # -- API

    def _predict(self, model: str, version: int | None, label: str | None, signature_name: str,
                 inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        document: dict[str, Any] = {"signature_name": signature_name}
        columns = {name: _to_json(name, np.asarray(value)) for name, value in inputs.items()}
        # Columnar format; a single input as a plain value (TF Serving takes either), which
        # Ingot's server parses without json.loads when it is a dense integer array.
        document["inputs"] = next(iter(columns.values())) if len(columns) == 1 else columns
        body = json.dumps(document, separators=(",", ":")).encode()
        answer = self.request("POST", self._model_path(model, version, label) + ":predict", body)
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if outputs is None:
            raise ServingError(Code.UNKNOWN, f"predict answer has no 'outputs': {str(answer)[:200]}")
        if not isinstance(outputs, dict):
            names = self._signature_outputs(model, version, label, signature_name)
            outputs = {names[0]: outputs}
        return {name: _from_json(name, value) for name, value in outputs.items()}

    def _signature_outputs(self, model: str, version: int | None, label: str | None, signature: str) -> list[str]:
        """A single-output signature's answer is unnamed in TF Serving's JSON; its name comes
        from the metadata (cached)."""
        key = (model, version, label, signature)
        if key not in self._output_names:
            meta = self._metadata(model, version, label)
            sig = meta["metadata"]["signature_def"]["signature_def"][signature]
            self._output_names[key] = sorted(sig.get("outputs", {}))
        return self._output_names[key]

    def _metadata(self, model: str, version: int | None, label: str | None) -> dict:
        return self.request("GET", self._model_path(model, version, label) + "/metadata")

    def _status(self, model: str, version: int | None, label: str | None) -> list[VersionStatus]:
        answer = self.request("GET", self._model_path(model, version, label))
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


def _to_json(name: str, array: np.ndarray) -> Any:
    """Bytes as {"b64": ...} (TF Serving's binary form), text as strings, numbers as numbers."""
    if array.dtype.kind in "OSU":
        flat = [
            {"b64": base64.b64encode(v).decode("ascii")} if isinstance(v, bytes) else str(v)
            for v in array.ravel().tolist()
        ]
        return _nest(flat, array.shape)
    return array.tolist()


def _nest(flat: list, shape: tuple[int, ...]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = int(np.prod(shape[1:]))
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _from_json(name: str, value: Any) -> np.ndarray:
    def leaf(v: Any) -> Any:
        if isinstance(v, dict) and "b64" in v:
            return base64.b64decode(v["b64"])
        return v

    if name.endswith(BYTES_SUFFIX) or _has_strings(value):
        flat: list = []
        shape = _walk(value, flat, leaf)
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return decode_strings(out.reshape(shape)) if not name.endswith(BYTES_SUFFIX) else out.reshape(shape)
    return np.asarray(value)


def _has_strings(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (str, dict))


def _walk(value: Any, out: list, leaf: Any) -> tuple[int, ...]:
    if isinstance(value, list):
        shapes = [_walk(v, out, leaf) for v in value]
        return (len(value), *(shapes[0] if shapes else ()))
    out.append(leaf(value))
    return ()
