"""A throwaway PostgreSQL server for tests and benchmarks.

Starts Debian's `postgres` binaries on a free loopback port with its data directory and unix
sockets in a fresh temporary directory, and deletes everything on exit. Missing binaries are an
error, never a skip: the registry must be tested against a real PostgreSQL (`make postgres`
installs Debian's package). initdb refuses to run as root, so under root the server runs as the
unprivileged `postgres` system user that the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SEARCH_GLOB = "/usr/lib/postgresql/*/bin"
SUPERUSER = "postgres"
INSTALL_HINT = (
    "install Debian's PostgreSQL server (`make postgres`, or "
    "`apt-get install postgresql`); the registry tests need a real server and are never skipped"
)


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be found or started; the message says what to do."""


def find_bindir() -> Path:
    """The newest Debian PostgreSQL bin directory, else the one holding `postgres` on PATH."""
    candidates = [Path(p) for p in glob.glob(SEARCH_GLOB) if (Path(p) / "postgres").is_file()]
    if candidates:
        return max(candidates, key=lambda p: _version_key(p.parent.name))
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    raise PostgresUnavailable(f"PostgreSQL server binaries not found under {SEARCH_GLOB} or on PATH; {INSTALL_HINT}")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway server; `url` is a SQLAlchemy URL for its `postgres` database."""

    port: int
    root: Path
    process: subprocess.Popen[bytes]
    _created: list[str] = field(default_factory=list)
    _relaunch: Callable[[], subprocess.Popen[bytes]] | None = None

    def crash(self) -> None:
        """Stop the server the way a crash does (SIGQUIT: immediate shutdown, no checkpoint)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            self.process.wait(timeout=30)

    def restart(self, timeout_s: float = 60.0) -> None:
        """Start the stopped server again on the same port and data (crash recovery runs)."""
        import psycopg

        assert self._relaunch is not None and self.process.poll() is not None
        self.process = self._relaunch()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self._dsn("postgres")) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise PostgresUnavailable(f"postgres did not restart; log:\n{self.log_tail()}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL (one per test keeps tests independent)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        self._created.append(name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database} connect_timeout=5"

    def log_tail(self, lines: int = 30) -> str:
        log = self.root / "postgres.log"
        if not log.exists():
            return "(no server log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class RunAs:
    """How to drop root to the `postgres` user for initdb and the server.

    A `setpriv` prefix rather than Popen's user/group arguments: those make Python fork without
    exec-ing at once, which runs gRPC's fork handlers in the child of a process that has used
    gRPC (a test worker that ran serving tests) and crashed postgres at start. With a command
    prefix Popen can vfork, which runs no fork handlers."""

    prefix: tuple[str, ...] = ()
    uid: int | None = None
    gid: int | None = None


def _run_as() -> RunAs:
    """Nothing to do when not root; else `setpriv` to the `postgres` system user."""
    if os.geteuid() != 0:
        return RunAs()
    try:
        entry = pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and no `{SUPERUSER}` system user exists to run initdb as; {INSTALL_HINT}"
        ) from None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise PostgresUnavailable("running as root needs util-linux's `setpriv` to start PostgreSQL as "
                                  f"the `{SUPERUSER}` user; {INSTALL_HINT}")
    prefix = (setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--")
    return RunAs(prefix, entry.pw_uid, entry.pw_gid)


def _chown_for(path: Path, run_as: RunAs) -> None:
    if run_as.uid is not None and run_as.gid is not None:
        os.chown(path, run_as.uid, run_as.gid)


@contextmanager
def throwaway_postgres(
    *,
    durable: bool = False,
    settings: Sequence[str] = (),
    startup_timeout_s: float = 60.0,
) -> Iterator[PostgresServer]:
    """Run a fresh PostgreSQL server for the duration of the block.

    `durable=False` (tests) turns fsync and synchronous commit off, which is safe for data that
    is deleted afterwards and several times faster; benchmarks pass `durable=True` to measure the
    server's default, crash-safe settings. `settings` are extra `name=value` server options.
    """
    bindir = find_bindir()
    run_as = _run_as()
    root = Path(tempfile.mkdtemp(prefix="ingot-pg-"))
    os.chmod(root, 0o700)
    _chown_for(root, run_as)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "HOME": str(root), "TZ": "UTC"}
    env.pop("PGDATA", None)
    server: PostgresServer | None = None
    try:
        initdb = subprocess.run(
            [*run_as.prefix, str(bindir / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER, "--auth=trust",
             "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"],
            env=env, capture_output=True, text=True, check=False,
        )
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed (exit {initdb.returncode}): {initdb.stderr.strip()[-2000:]}")
        fast = [] if durable else ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        options = ["listen_addresses=127.0.0.1", f"unix_socket_directories={root}", "max_connections=100",
                   "timezone=UTC", *fast, *settings]
        for _attempt in range(3):
            server = _start(bindir, root, env, run_as, options, startup_timeout_s)
            if server is not None:
                break
        if server is None:
            raise PostgresUnavailable(f"PostgreSQL did not start after 3 attempts; log:\n{_read_log(root)}")
        yield server
    finally:
        if server is not None:
            _stop(server.process)
        shutil.rmtree(root, ignore_errors=True)


def _read_log(root: Path, lines: int = 30) -> str:
    log = root / "postgres.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def _start(bindir: Path, root: Path, env: dict[str, str], run_as: RunAs,
           options: list[str], timeout_s: float) -> PostgresServer | None:
    """Start on a free port and wait until it accepts connections; None if the port was taken."""
    import psycopg

    port = _free_port()
    command = [*run_as.prefix, str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port)]
    for option in options:
        command += ["-c", option]

    def launch() -> subprocess.Popen[bytes]:
        with open(root / "postgres.log", "ab") as log:
            return subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    process = launch()
    server = PostgresServer(port=port, root=root, process=process, _relaunch=launch)
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = _read_log(root)
            if "could not bind" in text or "Address already in use" in text:
                return None
            raise PostgresUnavailable(f"postgres exited with code {process.returncode} while starting; log:\n{text}")
        try:
            with psycopg.connect(server._dsn("postgres")) as conn:
                conn.execute("SELECT 1")
            return server
        except psycopg.OperationalError as err:
            last_error = str(err).strip()
            time.sleep(0.05)
    _stop(process)
    raise PostgresUnavailable(
        f"postgres did not accept connections within {timeout_s:.0f}s ({last_error}); log:\n{_read_log(root)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT: roll back and exit), then SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
