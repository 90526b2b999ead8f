"""Bearer tokens the gateway checks, read from files named in the routing table and re-read when
the file changes. A file that cannot be read, or holds an empty or short token, refuses
everything it guards: a token check never fails open."""

from __future__ import annotations

import hmac
import os
import threading

from ingot.errors import ConfigError


class TokenFile:
    def __init__(self, what: str) -> None:
        self.what = what
        self._cache: tuple[str, float, str] | None = None
        self._lock = threading.Lock()

    def token(self, path: str) -> str:
        """The token in `path`; ConfigError naming the file when it is unusable."""
        from ingot.storage import read_token_file

        try:
            mtime = os.stat(path).st_mtime
        except OSError as err:
            raise ConfigError(f"cannot read {self.what} {path}: {err.strerror or err}") from None
        with self._lock:
            cached = self._cache
        if cached is not None and cached[:2] == (path, mtime):
            return cached[2]
        token = read_token_file(path, what=self.what)
        with self._lock:
            self._cache = (path, mtime, token)
        return token

    def accepts(self, path: str, given: str | None) -> bool:
        """True when `given` is the token in `path` (False when the file is unusable)."""
        if not given:
            return False
        try:
            token = self.token(path)
        except ConfigError:
            return False
        return hmac.compare_digest(given.strip().encode(), token.encode())
