"""A loopback HTTP server that answers like the Kubeflow Pipelines v2beta1 API, for the few calls
`kfp.Client(...).create_run_from_pipeline_func` makes, and records what it was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class FakeKfp:
    url: str = ""
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)  # the Authorization header of each request
    experiments: dict[str, str] = field(default_factory=lambda: {"Default": "exp-default"})
    run_id: str = "3f5c2a4e-run"
    fail_runs_with: int | None = None  # answer POST /runs with this HTTP status
    run_states: dict[str, str] = field(default_factory=dict)  # GET /runs/<id> answers this state (default RUNNING)

    def runs(self) -> list[Any]:
        return [body for method, path, body in self.requests if method == "POST" and path == "/apis/v2beta1/runs"]


def _handler(state: FakeKfp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:  # keep test output clean
            pass

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlparse(self.path)
            state.requests.append(("GET", url.path, parse_qs(url.query)))
            state.authorization.append(self.headers.get("Authorization"))
            if url.path == "/apis/v2beta1/healthz":
                self._reply(200, {"multi_user": False})
            elif url.path == "/apis/v2beta1/experiments":
                wanted = json.loads(parse_qs(url.query)["filter"][0])["predicates"][0]["stringValue"]
                found = [{"experiment_id": eid, "display_name": name}
                         for name, eid in state.experiments.items() if name == wanted]
                self._reply(200, {"experiments": found, "total_size": len(found)} if found else {})
            elif url.path.startswith("/apis/v2beta1/runs/"):
                run_id = url.path.rsplit("/", 1)[1]
                self._reply(200, {"run_id": run_id, "state": state.run_states.get(run_id, "RUNNING")})
            else:
                self._reply(404, {"error": f"no route {url.path}", "code": 5})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            path = urlparse(self.path).path
            state.requests.append(("POST", path, body))
            state.authorization.append(self.headers.get("Authorization"))
            if path == "/apis/v2beta1/experiments":
                experiment_id = f"exp-{len(state.experiments) + 1}"
                state.experiments[body["display_name"]] = experiment_id
                self._reply(200, {"experiment_id": experiment_id, "display_name": body["display_name"]})
            elif path == "/apis/v2beta1/runs":
                if state.fail_runs_with:
                    self._reply(state.fail_runs_with, {"error": "pipeline spec rejected", "message": "pipeline spec rejected", "code": 3})
                    return
                self._reply(200, {"run_id": state.run_id, "display_name": body.get("display_name"),
                                  "experiment_id": body.get("experiment_id"), "state": "PENDING"})
            else:
                self._reply(404, {"error": f"no route {path}", "code": 5})

    return Handler


@contextmanager
def fake_kfp_api() -> Iterator[FakeKfp]:
    state = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
