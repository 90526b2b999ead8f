"""Feedback labels: parsing `POST /v1/feedback` bodies and resolving a label to a class.

Body forms: one object `{"request_id": "...", "row": 0, "label": "7", "feedback_key": "..."}`
(`row` defaults to 0; `feedback_key` is the answer's x-ingot-feedback-key, which a holder of the
feedback token may leave out) or a JSON array of such objects, applied all-or-nothing. A label is a class name or a class id
(an integer, or a string of digits that is not itself a class name).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ingot.errors import IngotError, NotFoundError
from ingot.inference_log.records import FeedbackItem, valid_request_id

MAX_ITEMS = 10_000
MAX_KEY_LENGTH = 128  # a feedback key is 64 hex digits


class InvalidFeedback(IngotError):
    """The feedback body or a label is malformed or names no class of the model (HTTP 400)."""


class LabelConflict(IngotError):
    """The row already has a different label (HTTP 409); labels are never overwritten."""


class UnknownRow(NotFoundError):
    """No logged prediction for that request id and row (HTTP 404)."""


class RowNotLogged(UnknownRow):
    """No row at all for that request id and row: unknown, or not written yet (the log is
    written in batches off the request path), so a caller may wait briefly and ask again."""


def parse_feedback(doc: Any) -> list[FeedbackItem]:
    """Feedback items from a decoded JSON body; raises InvalidFeedback naming what is wrong."""
    if isinstance(doc, dict):
        entries, single = [doc], True
    elif isinstance(doc, list):
        entries, single = doc, False
    else:
        raise InvalidFeedback(
            'feedback body must be an object {"request_id": ..., "row": 0, "label": ...} or a list of them'
        )
    if not entries:
        raise InvalidFeedback("feedback list is empty; expected at least one label")
    if len(entries) > MAX_ITEMS:
        raise InvalidFeedback(f"feedback list has {len(entries)} labels; at most {MAX_ITEMS} per request")
    return [_item(entry, "body" if single else f"item {index}") for index, entry in enumerate(entries)]


def _item(entry: Any, where: str) -> FeedbackItem:
    if not isinstance(entry, dict):
        raise InvalidFeedback(f"feedback {where} must be an object with request_id, row and label")
    unknown = sorted(set(entry) - {"request_id", "row", "label", "feedback_key"})
    if unknown:
        raise InvalidFeedback(f"feedback {where} has unknown key(s) {unknown}; expected request_id, row, label, "
                              "feedback_key")
    request_id = entry.get("request_id")
    if not valid_request_id(request_id):
        raise InvalidFeedback(
            f"feedback {where}: request_id must be the x-ingot-request-id of a prediction, got {request_id!r}"
        )
    row = entry.get("row", 0)
    if isinstance(row, bool) or not isinstance(row, int) or row < 0:
        raise InvalidFeedback(f"feedback {where}: row must be a non-negative integer, got {row!r}")
    label = entry.get("label")
    if isinstance(label, bool) or not isinstance(label, (str, int)) or label == "":
        raise InvalidFeedback(f"feedback {where}: label must be a class name or a class id, got {label!r}")
    key = entry.get("feedback_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH):
        raise InvalidFeedback(f"feedback {where}: feedback_key must be the answer's x-ingot-feedback-key (a string), "
                              f"got {str(key)[:80]!r}")
    return FeedbackItem(request_id=request_id, row=row, label=label, feedback_key=key)  # type: ignore[arg-type]


def resolve_label(label: str | int, classes: Sequence[str], *, what: str) -> tuple[int, str]:
    """(class id, class name) for a label given as a name or an id; `what` names the model version."""
    if isinstance(label, str) and label in classes:
        return classes.index(label), label
    class_id: int | None = label if isinstance(label, int) else None
    if isinstance(label, str) and label.isascii() and label.isdigit():
        class_id = int(label)
    if class_id is not None and 0 <= class_id < len(classes):
        return class_id, classes[class_id]
    shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
    raise InvalidFeedback(
        f"label {label!r} is not a class of {what}; expected a class name ({shown}) "
        f"or a class id 0..{len(classes) - 1}"
    )
