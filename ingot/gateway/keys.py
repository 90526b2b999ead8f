"""Feedback keys: each answer's `x-ingot-feedback-key` is HMAC-SHA256 of the server's request id
under the gateway's secret, so a label can come only from the answer's recipient (who gives the
key back as `feedback_key`) or from a holder of the feedback token.

The secret is read from a file (`--feedback-secret-file` / `$INGOT_FEEDBACK_SECRET_FILE`, at least
32 bytes) or, when none is given, generated for this process: then keys are valid only on this
replica and only until it restarts. Gateways behind one Service need one shared secret (the
chart mounts it from a Secret).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

SECRET_BYTES = 32


class FeedbackKeys:
    def __init__(self, secret: bytes, *, generated: bool = False) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"a feedback-key secret needs at least {SECRET_BYTES} bytes")
        self._mac: Any = hmac.new(secret, digestmod=hashlib.sha256)  # copied per key: no re-keying cost
        self.generated = generated

    @classmethod
    def from_file(cls, path: str | None) -> FeedbackKeys:
        """The secret in `path` (ConfigError when unreadable or short); None: a fresh random one."""
        if not path:
            return cls(secrets.token_bytes(SECRET_BYTES), generated=True)
        from ingot.storage import read_token_file

        return cls(read_token_file(path, what="the feedback-key secret file").encode())

    def key(self, request_id: str) -> str:
        mac = self._mac.copy()
        mac.update(request_id.encode())
        return str(mac.hexdigest())

    def matches(self, request_id: str, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(self.key(request_id).encode(), given.encode())
