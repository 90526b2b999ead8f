"""Inference-log fixtures: every store test runs on SQLite and on a real, throwaway PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from ingot.inference_log.records import LogRecord
from ingot.inference_log.store import InferenceLogStore
from tests.support.databases import backends, database_factory


@pytest.fixture(params=backends("log-postgres"))
def new_log_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], str]]:
    """A factory of URLs to fresh, empty databases on the test's backend."""
    with database_factory(request, tmp_path, "log") as make:
        yield make


@pytest.fixture
def log_url(new_log_database: Callable[[], str]) -> str:
    return new_log_database()


@pytest.fixture
def store(log_url: str) -> Iterator[InferenceLogStore]:
    with InferenceLogStore.from_url(log_url) as opened:
        yield opened


def record(request_id: str = "req-1", row: int = 0, *, variant: str = "champion", version: int | None = 1,
           assignment: str = "weight", predicted: int | None = 3, name: str | None = "3",
           status: str = "OK", experiment: str | None = "exp-1") -> LogRecord:
    """A log record the way the gateway writes one (errors: predicted=None, status the code)."""
    return LogRecord(
        request_id=request_id, row=row, ts=datetime(2026, 11, 29, 12, 0, tzinfo=UTC), model="digits",
        experiment=experiment, variant=variant, assignment=assignment, model_version=version,
        signature="serving_default", input_sha256="ab" * 32, predicted_class_id=predicted,
        predicted_class_name=name if predicted is not None else None,
        confidence=0.9 if predicted is not None else None, input_mean=100.0, input_std=20.0,
        latency_ms=3.5, status=status,
    )


DIGITS = [str(i) for i in range(10)]


def digit_classes(model: str, version: int | None) -> list[str] | None:
    return DIGITS if model == "digits" else None
