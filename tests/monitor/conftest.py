"""Monitor fixtures: databases on SQLite and a real, throwaway PostgreSQL (as tests/registry does),
with the inference-log tables, and helpers that write log rows the way the gateway does."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from ingot.inference_log.schema import feedback_labels, inference_log
from ingot.inference_log.store import InferenceLogStore
from ingot.registry import Registry
from tests.support.databases import backends, database_factory


@pytest.fixture(params=backends("monitor-postgres"))
def new_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], str]]:
    with database_factory(request, tmp_path, "monitor") as make:
        yield make


@pytest.fixture
def database_url(new_database: Callable[[], str]) -> str:
    """A migrated registry database that also holds the inference-log tables."""
    url = new_database()
    Registry.from_url(url).close()
    InferenceLogStore.from_url(url).close()
    return url


def write_log(engine, model: str, class_ids, confidences, *, means=None, stds=None, correct=None,
              variant: str = "champion", version: int | None = 1, start: datetime | None = None,
              step: timedelta = timedelta(seconds=1), status: str = "OK", labels=None,
              assignment: str = "weight", evidence: bool | None = None) -> None:
    """Insert one inference-log row per value (and a feedback label per row where `correct` is given);
    `evidence` as the gateway marks it (by default: weight-assigned rows)."""
    evidence = assignment == "weight" if evidence is None else evidence
    start = start or datetime.now(UTC) - step * len(class_ids)
    rows, feedback = [], []
    for i, (class_id, confidence) in enumerate(zip(class_ids, confidences)):
        request_id = uuid.uuid4().hex
        rows.append({
            "request_id": request_id, "row": 0, "ts": start + step * i, "model": model, "experiment": None,
            "variant": variant, "assignment": assignment, "model_version": version, "signature": "serving_default",
            "input_sha256": None, "predicted_class_id": int(class_id) if status == "OK" else None,
            "predicted_class_name": f"c{int(class_id)}" if status == "OK" else None,
            "confidence": float(confidence) if status == "OK" else None,
            "input_mean": None if means is None else float(means[i]),
            "input_std": None if stds is None else float(stds[i]),
            "latency_ms": 1.0, "status": status, "evidence": evidence,
        })
        if correct is not None:
            label = int(class_id) if correct[i] else (int(class_id) + 1) % 5
            feedback.append({"request_id": request_id, "row": 0, "label_id": label, "label_name": f"c{label}",
                             "received_at": start + step * i, "model": model, "experiment": None,
                             "variant": variant, "model_version": version, "correct": bool(correct[i])})
    with engine.begin() as conn:
        for chunk in range(0, len(rows), 5000):
            conn.execute(insert(inference_log), rows[chunk:chunk + 5000])
        for chunk in range(0, len(feedback), 5000):
            conn.execute(insert(feedback_labels), feedback[chunk:chunk + 5000])




def make_champion(registry_url: str, model: str, card: dict, directory) -> None:
    """Register `card` as the model's champion: a version directory holding only its model card."""
    from pathlib import Path

    from ingot.repository import write_model_card

    directory = Path(directory)
    (directory / "assets.extra").mkdir(parents=True, exist_ok=True)
    write_model_card(str(directory), card)
    gate = card.get("gate") or {"blessed": True, "reasons": [], "checks": [], "thresholds": {}}
    with Registry.from_url(registry_url) as registry:
        registry.register_version(model, version=1, artifact_uri=str(directory), model_sha256="0" * 64,
                                  config=card.get("training_config") or {}, gate=gate)
        registry.mark_ready(model, 1, verify=lambda *_: True)
        assert registry.champion(model).version == 1
