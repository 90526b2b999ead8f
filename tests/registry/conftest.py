"""Registry fixtures: every registry test runs against SQLite and a real, throwaway PostgreSQL.

The PostgreSQL parameter carries the `xdist_group` mark, so under `pytest -n 2 --dist loadgroup`
one worker runs all of them against a single server; each test gets its own fresh database.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from ingot.registry import Registry
from tests.support.postgres import PostgresServer, throwaway_postgres

BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.xdist_group("registry-postgres")]),
]
_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with throwaway_postgres() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def registry_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A URL to an empty registry database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"registry_{os.getpid()}_{next(_database_numbers)}"
    url = server.create_database(name)
    yield url
    server.drop_database(name)


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    with Registry.from_url(registry_url) as opened:
        yield opened

