"""Batched writes and the feedback join, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ingot.errors import NotFoundError
from ingot.inference_log.feedback import InvalidFeedback, LabelConflict, parse_feedback
from ingot.inference_log.records import FeedbackItem
from ingot.inference_log.store import InferenceLogStore
from tests.inference_log.conftest import digit_classes, record


def test_a_batch_is_written_once_even_when_retried(store: InferenceLogStore) -> None:
    batch = [record("req-1", 0), record("req-1", 1, predicted=None, status="INVALID_ARGUMENT"),
             record("req-1", 0, variant="shadow", version=2, assignment="mirror")]
    assert store.write(batch) == 3
    store.write(batch)  # a retry after a lost commit acknowledgement adds nothing
    rows = store.rows("req-1")
    assert [(r["row"], r["variant"], r["status"]) for r in rows] == [
        (0, "champion", "OK"), (1, "champion", "INVALID_ARGUMENT"), (0, "shadow", "OK")]
    assert rows[0]["ts"].isoformat() == "2026-11-29T12:00:00+00:00"
    assert rows[1]["predicted_class_id"] is None and rows[1]["latency_ms"] == 3.5


def test_feedback_joins_the_serving_row_never_the_shadow(store: InferenceLogStore) -> None:
    store.write([record("req-1", 0, variant="challenger", version=2, assignment="sticky", predicted=7, name="7"),
                 record("req-1", 0, variant="shadow", version=1, assignment="mirror", predicted=3)])
    [label] = store.record_feedback([FeedbackItem("req-1", 0, "7")], digit_classes)
    assert (label.variant, label.model_version, label.experiment, label.label_id, label.correct, label.created) == (
        "challenger", 2, "exp-1", 7, True, True)
    [stored] = store.labels()
    assert (stored["variant"], stored["model_version"], stored["correct"], stored["label_name"]) == (
        "challenger", 2, True, "7")


def test_the_same_label_again_is_idempotent_and_a_different_one_conflicts(store: InferenceLogStore) -> None:
    store.write([record("req-1", 0, predicted=3)])
    first = store.record_feedback([FeedbackItem("req-1", 0, "5")], digit_classes)[0]
    again = store.record_feedback([FeedbackItem("req-1", 0, 5)], digit_classes)[0]  # by id this time
    assert (first.created, again.created, again.label_name, again.correct) == (True, False, "5", False)
    assert again.received_at == first.received_at
    with pytest.raises(LabelConflict, match=r"already labelled '5', not '6'"):
        store.record_feedback([FeedbackItem("req-1", 0, "6")], digit_classes)
    assert len(store.labels()) == 1


def test_unknown_requests_rows_and_failed_rows_are_not_found(store: InferenceLogStore) -> None:
    store.write([record("req-1", 0), record("req-2", 0, predicted=None, status="UNAVAILABLE"),
                 record("req-3", 0, variant="shadow", assignment="mirror")])
    with pytest.raises(NotFoundError, match="no logged prediction for request 'nope' row 0"):
        store.record_feedback([FeedbackItem("nope", 0, "1")], digit_classes)
    with pytest.raises(NotFoundError, match="request 'req-1' row 4"):
        store.record_feedback([FeedbackItem("req-1", 4, "1")], digit_classes)
    with pytest.raises(NotFoundError, match="no prediction to label .it failed with UNAVAILABLE"):
        store.record_feedback([FeedbackItem("req-2", 0, "1")], digit_classes)
    with pytest.raises(NotFoundError):  # only a shadow row: nothing SERVED this request
        store.record_feedback([FeedbackItem("req-3", 0, "1")], digit_classes)


def test_a_label_that_is_no_class_is_refused(store: InferenceLogStore) -> None:
    store.write([record("req-1", 0)])
    for label in ("cat", 10, "-1", "10"):
        with pytest.raises(InvalidFeedback, match=rf"label {label!r} is not a class of model 'digits' version 1; "
                                                  r"expected a class name \(0, 1, .*\) or a class id 0..9"):
            store.record_feedback([FeedbackItem("req-1", 0, label)], digit_classes)
    with pytest.raises(InvalidFeedback, match="class names of model 'digits' version 1 are unknown"):
        store.record_feedback([FeedbackItem("req-1", 0, "3")], lambda model, version: None)
    assert store.labels() == []


def test_class_names_win_over_ids_and_ids_map_to_names(store: InferenceLogStore) -> None:
    store.write([record("req-1", 0, predicted=1, name="dog"), record("req-1", 1, predicted=0, name="2")])
    def classes(model, version):
        return ["2", "dog", "cat"]

    by_name, by_id = store.record_feedback([FeedbackItem("req-1", 1, "2"), FeedbackItem("req-1", 0, 2)], classes)
    assert (by_name.label_id, by_name.label_name, by_name.correct) == (0, "2", True)
    assert (by_id.label_id, by_id.label_name, by_id.correct) == (2, "cat", False)


def test_a_list_is_all_or_nothing(store: InferenceLogStore) -> None:
    store.write([record("req-1", row) for row in range(3)])
    with pytest.raises(NotFoundError):
        store.record_feedback([FeedbackItem("req-1", 0, "3"), FeedbackItem("req-1", 9, "3")], digit_classes)
    assert store.labels() == []
    stored = store.record_feedback([FeedbackItem("req-1", row, "3") for row in range(3)], digit_classes)
    assert [s.row for s in stored] == [0, 1, 2] and all(s.correct for s in stored)


def test_a_label_keeps_the_variant_that_served_after_the_weights_change(store: InferenceLogStore) -> None:
    # Served by the challenger under weight 90; the experiment then moved everyone to the champion.
    store.write([record("early", 0, variant="challenger", version=2, assignment="sticky", predicted=4, name="4")])
    store.write([record("late", 0, variant="champion", version=1, assignment="sticky", predicted=4, name="4")])
    early, late = store.record_feedback([FeedbackItem("early", 0, "4"), FeedbackItem("late", 0, "9")], digit_classes)
    assert (early.variant, early.model_version, early.correct) == ("challenger", 2, True)
    assert (late.variant, late.model_version, late.correct) == ("champion", 1, False)


@pytest.mark.parametrize(("body", "message"), [
    ("7", "must be an object"),
    ([], "list is empty"),
    ({"request_id": "r", "label": "7", "rows": 1}, r"unknown key\(s\) \['rows'\]"),
    ({"request_id": "bad id!", "label": "7"}, "request_id must be the x-ingot-request-id"),
    ({"request_id": "r", "row": -1, "label": "7"}, "row must be a non-negative integer, got -1"),
    ({"request_id": "r", "row": True, "label": "7"}, "row must be a non-negative integer, got True"),
    ({"request_id": "r", "label": 1.5}, "label must be a class name or a class id, got 1.5"),
    ([{"request_id": "r", "label": "1"}, 3], "feedback item 1 must be an object"),
])
def test_malformed_feedback_bodies_name_what_is_wrong(body: object, message: str) -> None:
    with pytest.raises(InvalidFeedback, match=message):
        parse_feedback(body)


def test_feedback_bodies_single_and_list() -> None:
    assert parse_feedback({"request_id": "r1", "label": "7"}) == [FeedbackItem("r1", 0, "7")]
    assert parse_feedback([{"request_id": "r1", "row": 2, "label": 7}, {"request_id": "r2", "label": "cat"}]) == [
        FeedbackItem("r1", 2, 7), FeedbackItem("r2", 0, "cat")]
