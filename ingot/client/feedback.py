"""Ground-truth labels to an Ingot gateway (`POST /v1/feedback`), standard library only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from ingot.errors import IngotError
from ingot.protocol.routes import FEEDBACK_PATH


class FeedbackRejected(IngotError):
    """The gateway refused the label; `status` is its HTTP status (400, 401, 403, 404, 409, 503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def send_feedback(gateway_url: str, request_id: str, label: str | int, *, row: int = 0,
                  token: str | None = None, feedback_key: str | None = None,
                  timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Label one row of a logged prediction, with the answer's `feedback_key` (x-ingot-feedback-key)
    or the gateway's feedback `token`; returns the stored label(s) as the gateway reports them."""
    item: dict[str, Any] = {"request_id": request_id, "row": row, "label": label}
    if feedback_key:
        item["feedback_key"] = feedback_key
    return send_labels(gateway_url, [item], token=token, timeout_s=timeout_s)


def send_labels(gateway_url: str, labels: Sequence[dict[str, Any]], *, token: str | None = None,
                timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Label many rows in one request (all or nothing); each item is {request_id, row, label,
    feedback_key}, where a holder of the feedback `token` may leave out feedback_key."""
    body = json.dumps(list(labels)).encode()
    request = urllib.request.Request(gateway_url.rstrip("/") + FEEDBACK_PATH, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return list(json.loads(response.read())["labels"])
    except urllib.error.HTTPError as err:
        payload = err.read()
        try:
            message = json.loads(payload)["error"]
        except (ValueError, KeyError, TypeError):
            message = payload.decode("utf-8", "replace")[:200] or err.reason
        raise FeedbackRejected(err.code, f"feedback refused ({err.code}): {message}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise IngotError(f"cannot reach the gateway at {gateway_url}: {reason}") from None
