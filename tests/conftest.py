"""Suite-wide settings: quiet TensorFlow, and keep every test's state out of the working tree."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer, throwaway_postgres


def pytest_configure(config):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The registry's SQLite file and local pipeline roots go to a per-run temp dir, never ./.ingot.
    os.environ["INGOT_DATA_DIR"] = tempfile.mkdtemp(prefix="ingot-test-data-")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL per test worker, started when a test first needs it."""
    with throwaway_postgres() as server:
        yield server
