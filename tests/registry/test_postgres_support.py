"""The throwaway PostgreSQL helper the registry tests and benchmark rely on."""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.support import postgres
from tests.support.postgres import PostgresUnavailable, throwaway_postgres


def test_missing_postgresql_is_an_error_that_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(postgres, "SEARCH_GLOB", str(tmp_path / "nothing" / "*" / "bin"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PostgresUnavailable, match=r"PostgreSQL server binaries not found .* \(`make postgres`"):
        postgres.find_bindir()


def test_server_runs_unprivileged_on_loopback_and_is_removed_afterwards() -> None:
    with throwaway_postgres() as server:
        root, process = server.root, server.process
        assert server.url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/")
        with psycopg.connect(server._dsn("postgres")) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
        if os.geteuid() == 0:
            assert os.stat(root / "data").st_uid != 0  # initdb refuses root; it ran as `postgres`
        url = server.create_database("scratch")
        assert url.endswith("/scratch")
    assert process.poll() is not None
    assert not root.exists()
