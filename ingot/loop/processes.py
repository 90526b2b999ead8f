"""The servers the loop starts: each `ingot` command in its own process group on free loopback
ports, stopped on success, on failure and on Ctrl-C (SIGTERM first, so they drain and flush the
inference log; SIGKILL after a grace period)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ingot import settings
from ingot.errors import IngotError


class ProcessError(IngotError):
    """A server the loop started exited or never became ready."""


def free_port() -> int:
    """A port nothing listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class Supervisor:
    """Starts `ingot` subcommands and owns them until `stop_all`."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("wb")
        env = {**os.environ, settings.TF_LOG_LEVEL_ENV: settings.tf_log_level()}
        process = subprocess.Popen(
            [sys.executable, "-m", "ingot.cli.main", *args], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, start_new_session=True,  # Ctrl-C reaches us, not them
        )
        log.close()
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def wait_ready(self, child: Child, url: str, timeout_s: float = 180.0) -> None:
        """Until `url` answers 200 (a server's /readyz: its models are AVAILABLE)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise ProcessError(f"{child.name} exited with code {child.process.returncode}: "
                                   f"{child.tail() or 'no output'} (log: {child.log_path})")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise ProcessError(f"{child.name} was not ready after {timeout_s:.0f} s (log: {child.log_path})")

    def check_alive(self) -> None:
        for child in self.children:
            if child.process.poll() is not None:
                raise ProcessError(f"{child.name} exited with code {child.process.returncode}: "
                                   f"{child.tail() or 'no output'} (log: {child.log_path})")

    def stop(self, child: Child, grace_s: float = 20.0) -> None:
        self._stop([child] if child.process.poll() is None else [], grace_s)

    def stop_all(self, grace_s: float = 20.0) -> list[str]:
        """SIGTERM every child still running, wait, SIGKILL what is left; returns what was stopped."""
        running = [c for c in self.children if c.process.poll() is None]
        self._stop(running, grace_s)
        # Anything the children started themselves (their process groups) goes too.
        for child in self.children:
            _signal_group(child.process, signal.SIGKILL)
        return [c.name for c in running]

    def _stop(self, running: list[Child], grace_s: float) -> None:
        for child in running:
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in running:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait(timeout=10)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
