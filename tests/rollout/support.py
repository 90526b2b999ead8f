"""Builders for rollout tests: inference-log rows and labels written the way the gateway writes
them, and an actuator that records its calls together with the rollout state at call time."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from ingot.db import utc_now
from ingot.inference_log.schema import OK, feedback_labels, inference_log

MODEL = "digits"
TARGET = {"actuator": "test", "routes_file": "unused", "champion": {"rest": "http://champion"},
          "challenger": {"rest": "http://challenger"}}
_request_ids = itertools.count()


def log_rows(engine, experiment: str, variant: str, *, requests: int, labelled: int = 0, correct: int = 0,
             errors: int = 0, assignment: str = "weight", latency_ms: float | list[float] = 10.0,
             model: str = MODEL, ts: datetime | None = None, evidence: bool | None = None,
             error_status: str = "UNAVAILABLE") -> None:
    """`requests` rows served by `variant` (the first `errors` failed with `error_status`), the first
    `labelled` OK ones labelled, `correct` of those correctly. `evidence` as the gateway marks it:
    by default, weight-assigned rows that the model answered (OK or an upstream failure)."""
    from ingot.inference_log.schema import UPSTREAM_FAILURES

    randomised = assignment == "weight" if evidence is None else evidence
    answered = error_status in UPSTREAM_FAILURES  # a caller's own error is never evidence
    assert errors + labelled <= requests and correct <= labelled
    ts = ts or utc_now()
    rows, labels = [], []
    latencies = latency_ms if isinstance(latency_ms, list) else [latency_ms] * requests
    for i in range(requests):
        request_id = f"req-{next(_request_ids)}"
        failed = i < errors
        rows.append({
            "request_id": request_id, "row": 0, "ts": ts + timedelta(microseconds=i), "model": model,
            "experiment": experiment, "variant": variant, "assignment": assignment, "model_version": 1,
            "signature": "serving_default", "input_sha256": None,
            "predicted_class_id": None if failed else 1, "predicted_class_name": None if failed else "one",
            "confidence": None if failed else 0.9, "input_mean": None, "input_std": None,
            "latency_ms": latencies[i], "status": error_status if failed else OK,
            "evidence": randomised and (answered or not failed),
        })
        k = i - errors
        if not failed and k < labelled:
            labels.append({
                "request_id": request_id, "row": 0, "label_id": 1, "label_name": "one", "received_at": ts,
                "model": model, "experiment": experiment, "variant": variant, "model_version": 1,
                "correct": k < correct,
            })
    with engine.begin() as conn:
        if rows:
            conn.execute(insert(inference_log), rows)
        if labels:
            conn.execute(insert(feedback_labels), labels)


class RecordingActuator:
    """Records (action, argument, rollout state in the database at that moment)."""

    def __init__(self, store=None) -> None:
        self.calls: list[tuple[str, Any, str | None]] = []
        self.store = store
        self.available_versions: set[tuple[str, int]] = {("challenger", 2), ("champion", 1), ("champion", 2)}
        self.fail_promote = 0
        self.weight = 0

    def _state(self, rollout) -> str | None:
        return self.store.get(rollout.id, transitions=False).state if self.store is not None else None

    def prepare(self, rollout) -> None:
        self.calls.append(("prepare", rollout.challenger_version, self._state(rollout)))

    def available(self, rollout, arm: str, version: int) -> bool:
        return (arm, version) in self.available_versions

    def set_weight(self, rollout, weight: int) -> None:
        self.weight = weight
        self.calls.append(("set_weight", weight, self._state(rollout)))

    def promote(self, rollout) -> None:
        self.calls.append(("promote", rollout.challenger_version, self._state(rollout)))
        if self.fail_promote:
            self.fail_promote -= 1
            raise RuntimeError("killed mid-promotion")
        self.weight = 0

    def actions(self) -> list[tuple[str, Any]]:
        """The calls that changed something (a set_weight repeating the current weight is a no-op)."""
        out: list[tuple[str, Any]] = []
        for name, arg, _ in self.calls:
            if name == "set_weight" and out and out[-1] == (name, arg):
                continue
            out.append((name, arg))
        return out
