"""The controller's HTTP side: the judge endpoint for progressive-delivery engines and metrics.

- `GET /v1/rollouts/{model}/verdict`: the current decision with its statistic, interval, counts
  and reasons (JSON). Argo Rollouts' `web` metric provider reads it with a `successCondition`
  such as `result.decision == "promote"`.
- `POST /v1/rollouts/{model}/gate/promote` and `.../gate/rollback`: 200 only when the decision
  is that one, 412 otherwise (with the same JSON): Flagger's confirm-promotion and rollback
  webhooks pass on 200.
- `GET /metrics`: Prometheus metrics of the controller; `GET /healthz`.

A database that is down gives 503 with a JSON error; the server keeps running. The server binds
127.0.0.1 unless told otherwise (the chart passes the pod's address), closes a connection that
sends nothing for `timeout_s`, and answers a bad Content-Length (negative, not a number, over
MAX_BODY_BYTES) with 400 instead of waiting for a body that will not come.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ingot.errors import IngotError, NotFoundError
from ingot.protocol.names import is_model_name

if TYPE_CHECKING:
    from ingot.rollout.controller import Controller
    from ingot.rollout.store import Rollout

log = logging.getLogger(__name__)

# What a finished rollout's verdict reads as, for a judge asking after the fact.
OUTCOME_DECISIONS = {"promoted": "promote", "promoting": "promote", "rolled_back": "rollback",
                     "inconclusive": "inconclusive", "aborted": "rollback"}
MAX_BODY_BYTES = 1 << 20  # a webhook's payload (Flagger's is a few hundred bytes); not needed
DEFAULT_HOST = "127.0.0.1"
DEFAULT_TIMEOUT_S = 10.0
_PATH = re.compile(r"^/v1/rollouts/(?P<model>[^/]+)/(?P<what>verdict|gate/promote|gate/rollback)$")


def verdict_document(controller: Controller, model: str) -> dict[str, Any]:
    """The judge's JSON for `model`'s latest rollout (a fresh read-only look while analyzing)."""
    rollout = controller.store.latest(model)
    base = {"model": model, "rollout": rollout.id, "experiment": rollout.experiment, "state": rollout.state,
            "champion_version": rollout.champion_version, "challenger_version": rollout.challenger_version,
            "weight": rollout.weight}
    if rollout.state == "analyzing":
        look, _ = controller.look(rollout)
        verdict = look.verdict
        return {**base, "decision": verdict.decision, "statistic": verdict.likelihood_ratio,
                "p_value": verdict.p_value, "interval": list(verdict.interval) if verdict.interval else None,
                "difference": verdict.difference, "counts": look.evidence()["counts"],
                "srm_p": verdict.checks.get("srm", {}).get("p_value"),
                "reasons": verdict.reasons, "holds": verdict.holds}
    last = rollout.verdict or {}
    decision = OUTCOME_DECISIONS.get(rollout.state, "continue")
    history = controller.store.get(rollout.id).transitions
    deciding = next((t for t in reversed(history) if t.to_state in ("promoting", "rolling_back")), None)
    evidence = deciding.evidence if deciding is not None else {}
    recorded: dict[str, Any] = evidence.get("verdict") or last
    return {**base, "decision": decision, "statistic": recorded.get("likelihood_ratio"),
            "p_value": recorded.get("p_value"), "interval": recorded.get("interval"),
            "difference": recorded.get("difference"), "counts": evidence.get("counts"),
            "srm_p": (recorded.get("checks") or {}).get("srm", {}).get("p_value"),
            "reasons": [deciding.reason] if deciding is not None else
            [f"rollout is {rollout.state}; no analysis yet"], "holds": recorded.get("holds", [])}


class RolloutMetrics:
    """Prometheus metrics of the controller, in their own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.state = Gauge("ingot_rollout_state", "1 for the state each model's latest rollout is in",
                           ["model", "state"], registry=self.registry)
        self.statistic = Gauge("ingot_rollout_statistic", "mSPRT statistic of the accuracy difference",
                               ["model"], registry=self.registry)
        self.interval_low = Gauge("ingot_rollout_interval_low", "always-valid interval lower bound, challenger - champion",
                                  ["model"], registry=self.registry)
        self.interval_high = Gauge("ingot_rollout_interval_high", "always-valid interval upper bound",
                                   ["model"], registry=self.registry)
        self.weight = Gauge("ingot_rollout_challenger_weight", "challenger percent of traffic", ["model"],
                            registry=self.registry)
        self.transitions = Counter("ingot_rollout_transitions", "state transitions written (actions follow)",
                                   ["model", "to_state"], registry=self.registry)
        self.reconcile_errors = Counter("ingot_rollout_reconcile_errors", "reconcile passes that failed",
                                        registry=self.registry)

    def observe(self, rollout: Rollout) -> None:
        from ingot.rollout.store import STATES

        for state in STATES:
            self.state.labels(rollout.model, state).set(1 if state == rollout.state else 0)
        self.weight.labels(rollout.model).set(rollout.weight)
        verdict = rollout.verdict or {}
        if verdict.get("likelihood_ratio") is not None:
            self.statistic.labels(rollout.model).set(verdict["likelihood_ratio"])
        if verdict.get("interval"):
            self.interval_low.labels(rollout.model).set(verdict["interval"][0])
            self.interval_high.labels(rollout.model).set(verdict["interval"][1])

    def on_transition(self, rollout: Rollout, _look: Any = None) -> None:
        self.transitions.labels(rollout.model, rollout.state).inc()
        self.observe(rollout)


def handle(controller: Controller, method: str, path: str) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) for a judge request; pure enough to test without sockets."""
    match = _PATH.match(path.split("?", 1)[0])
    if match is None or not is_model_name(match["model"]):
        return 404, {"error": f"no route {method} {path}; expected GET /v1/rollouts/MODEL/verdict or "
                              "POST /v1/rollouts/MODEL/gate/promote|rollback"}
    what = match["what"]
    if (what == "verdict") != (method == "GET"):
        return 405, {"error": f"{method} is not allowed on {path}"}
    try:
        document = verdict_document(controller, match["model"])
    except NotFoundError as err:
        return 404, {"error": str(err)}
    except IngotError as err:
        return 400, {"error": str(err)}
    except Exception as err:  # noqa: BLE001 - the database being down must not take the server with it
        log.warning("verdict for %s failed: %s", match["model"], err)
        return 503, {"error": f"cannot read the rollout database: {type(err).__name__}"}
    if what == "verdict":
        return 200, document
    wanted = what.split("/")[1]
    return (200 if document["decision"] == wanted else 412), document


def content_length(values: list[str]) -> tuple[int, str | None]:
    """(length, None) for one valid Content-Length (none: 0), else (0, the problem)."""
    if not values:
        return 0, None
    if len(set(values)) > 1:
        return 0, "conflicting Content-Length headers"
    text = values[0].strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        return 0, f"Content-Length must be a non-negative integer, got {text[:40]!r}"
    length = int(text)
    if length > MAX_BODY_BYTES:
        return 0, f"Content-Length {length} exceeds the limit of {MAX_BODY_BYTES} bytes"
    return length, None


class JudgeServer:
    """A small threaded HTTP server in the controller process."""

    def __init__(self, controller: Controller, metrics: RolloutMetrics, host: str = DEFAULT_HOST, port: int = 8080,
                 *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        class Handler(BaseHTTPRequestHandler):
            timeout = timeout_s  # socket timeout: an idle or stalled connection is closed

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _route(self, method: str) -> None:
                if method == "GET" and self.path == "/metrics":
                    self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
                    return
                if method == "GET" and self.path == "/healthz":
                    self._send(200, b'{"status": "ok"}', "application/json")
                    return
                status, body = handle(controller, method, self.path)
                self._send(status, json.dumps(body, default=float).encode(), "application/json")

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                length, problem = content_length(self.headers.get_all("Content-Length") or [])
                if problem is not None:
                    self.close_connection = True  # the body's end is unknown: nothing more is read
                    self._send(400, json.dumps({"error": problem}).encode(), "application/json")
                    return
                if length:
                    self.rfile.read(length)  # Flagger's payload: not needed
                self._route("POST")

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("judge: " + format, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="rollout-judge", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> JudgeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
