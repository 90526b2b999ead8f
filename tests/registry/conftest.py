"""Registry fixtures: every registry test runs against SQLite and a real, throwaway PostgreSQL.

The PostgreSQL parameter carries the `xdist_group` mark, so under `pytest -n 2 --dist loadgroup`
one worker runs all of them against a single server; each test gets its own fresh databases.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

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
def new_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], str]]:
    """A factory of URLs to fresh, empty databases on the test's backend."""
    created: list[str] = []
    server: PostgresServer | None = (
        request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    )

    def make() -> str:
        number = next(_database_numbers)
        if server is None:
            return f"sqlite:///{tmp_path / f'registry-{number}.db'}"
        name = f"registry_{os.getpid()}_{number}"
        created.append(name)
        return server.create_database(name)

    yield make
    for name in created:
        server.drop_database(name)  # type: ignore[union-attr]


@pytest.fixture
def registry_url(new_database: Callable[[], str]) -> str:
    return new_database()


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    with Registry.from_url(registry_url) as opened:
        yield opened
