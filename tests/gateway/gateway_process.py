"""`ingot gateway` as a real process on free loopback ports, and plain HTTP calls to it with
headers (for tests that attack it the way a caller would)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.serving.support import free_port, wait_for


class GatewayProcess:
    def __init__(self, tmp_path: Path, routes: dict[str, Any], *, log_url: str, extra: list[str] = (),
                 name: str = "gateway") -> None:
        self.routes_path = tmp_path / f"{name}-routes.yaml"
        self.write_routes(routes)
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.rest_url = f"http://127.0.0.1:{self.rest_port}"
        self.log_path = tmp_path / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingot.cli.main", "gateway", "--routes", str(self.routes_path),
             "--port", str(self.grpc_port), "--rest_api_port", str(self.rest_port), "--log-url", log_url,
             "--routes-poll-seconds", "0.2", "--log_level", "WARNING", *extra],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout_s=120, what=f"the {name} process")
        assert self.process.poll() is None, self.log_path.read_text()[-2000:]

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            return True
        try:
            with urllib.request.urlopen(f"{self.rest_url}/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def write_routes(self, doc: dict[str, Any]) -> None:
        tmp = self.routes_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc))
        tmp.replace(self.routes_path)

    def predict(self, images: Any = None, *, body: Any = None, headers: dict[str, str] | None = None,
                path: str = "/v1/models/colours:predict") -> tuple[int, Any, dict[str, str]]:
        document = body if body is not None else {"instances": images.tolist()}
        return call("POST", self.rest_url + path, document, headers)

    def feedback(self, items: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        return call("POST", self.rest_url + "/v1/feedback", items, headers)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def call(method: str, url: str, document: Any, headers: dict[str, str] | None = None,
         timeout: float = 30.0) -> tuple[int, Any, dict[str, str]]:
    """(status, parsed JSON, lower-cased headers), never raising on 4xx/5xx."""
    request = urllib.request.Request(url, data=json.dumps(document).encode(), method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload, found = response.status, response.read(), response.headers
    except urllib.error.HTTPError as err:
        status, payload, found = err.code, err.read(), err.headers
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = payload.decode("utf-8", "replace")
    return status, parsed, {k.lower(): v for k, v in found.items()}
