"""Capture fixtures: a real S3-protocol server (moto's server mode) on a free loopback port,
started and stopped per test, with the AWS settings the storage layer reads pointed at it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gateway.conftest import start_gateway  # noqa: F401 - the gateway suite's fixture
from tests.serving.conftest import conformance_server, exports  # noqa: F401 - shared session fixtures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _moto_server() -> str:
    found = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(found).exists():
        pytest.fail("moto_server is not installed; `pip install -e .[test]` installs moto[server]")
    return found


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """moto_server on 127.0.0.1:<free port>, bucket `capture` created; AWS_* env pointed at it."""
    port = _free_port()
    process = subprocess.Popen([_moto_server(), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = S3Server(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(server.endpoint, timeout=1).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                pytest.fail(f"moto_server did not start on port {port}")
            time.sleep(0.1)
    for key, value in {"AWS_ENDPOINT_URL": server.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(endpoint_url=server.endpoint, skip_instance_cache=True)
    fs.mkdir("capture")
    yield server
    server.stop()
    s3fs.S3FileSystem.clear_instance_cache()
    os.environ.pop("AWS_ENDPOINT_URL", None)


# ------------------------------------------------------------------ dataset build worlds

from tests.support.databases import backends, database_factory  # noqa: E402


@pytest.fixture(params=backends("capture-postgres"))
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One fresh database on the test's backend (SQLite, or the throwaway PostgreSQL server)."""
    with database_factory(request, tmp_path, "capture") as make:
        yield make()
