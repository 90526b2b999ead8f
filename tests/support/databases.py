"""Fresh databases for tests on both backends Ingot supports: SQLite and a real, throwaway
PostgreSQL (one server per test worker, the `postgres_server` fixture in tests/conftest.py).

A package's conftest parametrizes its database fixture with `backends(group)`: the PostgreSQL
case carries an `xdist_group`, so under `pytest -n 2 --dist loadgroup` one worker runs a
package's PostgreSQL tests against one server while the other worker runs other groups.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

_numbers = itertools.count()


def backends(group: str) -> list[Any]:
    return [
        "sqlite",
        pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.xdist_group(group)]),
    ]


@contextmanager
def database_factory(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Iterator[Callable[[], str]]:
    """A factory of URLs to fresh, empty databases on the backend `request.param` names;
    PostgreSQL databases are dropped afterwards."""
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    created: list[str] = []

    def make() -> str:
        number = next(_numbers)
        if server is None:
            return f"sqlite:///{tmp_path / f'{prefix}-{number}.db'}"
        name = f"{prefix}_{os.getpid()}_{number}"
        created.append(name)
        return str(server.create_database(name))

    yield make
    for name in created:
        server.drop_database(name)
