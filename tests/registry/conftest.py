"""Registry fixtures: every registry test runs against SQLite and a real, throwaway PostgreSQL.

The PostgreSQL parameter carries the `xdist_group` mark, so under `pytest -n 2 --dist loadgroup`
one worker runs all of them against a single server; each test gets its own fresh databases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ingot.registry import Registry
from tests.support.databases import backends, database_factory


@pytest.fixture(params=backends("registry-postgres"))
def new_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], str]]:
    """A factory of URLs to fresh, empty databases on the test's backend."""
    with database_factory(request, tmp_path, "registry") as make:
        yield make


@pytest.fixture
def registry_url(new_database: Callable[[], str]) -> str:
    return new_database()


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    with Registry.from_url(registry_url) as opened:
        yield opened
