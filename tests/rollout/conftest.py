"""Rollout fixtures: a registry with a champion and a challenger version, the inference-log
tables in the same database (the default layout), and an actuator that records what it is asked.
Every database test runs on SQLite and a real throwaway PostgreSQL (tests/registry/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ingot.inference_log.store import InferenceLogStore
from ingot.registry import Registry
from tests.registry.conftest import (  # noqa: F401
    new_database,
    registry,
    registry_url,
)
from tests.registry.helpers import publish
from tests.rollout.support import MODEL, RecordingActuator


@pytest.fixture
def staged(registry: Registry) -> Iterator[Registry]:  # noqa: F811
    """digits:1 champion, digits:2 candidate, and the log tables beside the registry's."""
    publish(registry, MODEL, 1)
    publish(registry, MODEL, 2)
    InferenceLogStore(registry.engine)  # the log's own migrations, as the gateway and controller run them
    yield registry


@pytest.fixture
def actuator() -> RecordingActuator:
    return RecordingActuator()
