"""A throwaway Redis server for tests and benchmarks: Debian's `redis-server` on a free loopback
port, no persistence, killed on exit. Missing binary is an error, never a skip (`make redis`)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

INSTALL_HINT = "install Debian's redis-server (`make redis`, or `apt-get install redis-server`)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    args: Sequence[str]
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """Stop it the way a crash does."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self) -> None:
        assert self.process.poll() is not None
        self.process = _launch(self.port, self.args)

    def stop(self) -> None:
        self.kill()


def _launch(port: int, extra: Sequence[str]) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(f"redis-server not found on PATH; {INSTALL_HINT}")
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            time.sleep(0.02)
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}: {' '.join(cmd)}")
    process.kill()
    raise RuntimeError("redis-server did not answer PING within 10 s")


@contextmanager
def redis_server(extra: Sequence[str] = ()) -> Iterator[RedisServer]:
    """Start one; `extra` adds server arguments such as `--maxmemory 1mb`."""
    port = _free_port()
    server = RedisServer(port=port, args=tuple(extra), process=_launch(port, extra))
    try:
        yield server
    finally:
        server.stop()
