"""The stage policy as plain functions, without a database: the store's write transactions call
these with what they read under the model's lock."""

from __future__ import annotations

import pytest

from ingot.errors import ModelError
from ingot.registry.policy import ALLOWED_TRANSITIONS, check_promotion, check_transition, ready_stage
from ingot.registry.records import Stage


def test_the_first_blessed_version_becomes_champion_later_ones_candidates() -> None:
    assert ready_stage("digits", blessed=True, champion=None) == (Stage.CHAMPION, "first blessed READY version of digits")
    assert ready_stage("digits", blessed=True, champion=1) == (Stage.CANDIDATE, "blessed; digits:1 is champion")
    stage, reason = ready_stage("digits", blessed=False, champion=None)
    assert stage is Stage.CANDIDATE and "not blessed" in reason


def test_transitions_follow_the_table_and_serving_stages_need_ready() -> None:
    check_transition("digits:2", Stage.CANDIDATE, Stage.CHALLENGER, "READY")
    with pytest.raises(ModelError, match="has no stage yet"):
        check_transition("digits:2", None, Stage.CHALLENGER, "PENDING")
    with pytest.raises(ModelError, match="allowed from champion: none \\(a champion is archived"):
        check_transition("digits:1", Stage.CHAMPION, Stage.CANDIDATE, "READY")
    with pytest.raises(ModelError, match="only a READY version can become challenger"):
        check_transition("digits:2", Stage.CANDIDATE, Stage.CHALLENGER, "FAILED")
    assert ALLOWED_TRANSITIONS[Stage.ARCHIVED] == {Stage.CHAMPION}  # rollback


def test_a_candidate_goes_through_the_ab_test_when_there_is_a_champion() -> None:
    check_promotion("digits:2", "digits", Stage.CANDIDATE, None)
    check_promotion("digits:2", "digits", Stage.CHALLENGER, 1)
    with pytest.raises(ModelError, match="make it the challenger first"):
        check_promotion("digits:2", "digits", Stage.CANDIDATE, 1)


def test_a_rejected_ready_version_may_be_readmitted_as_a_candidate_only() -> None:
    assert ALLOWED_TRANSITIONS[Stage.REJECTED] == {Stage.CANDIDATE}
    check_transition("digits:2", Stage.REJECTED, Stage.CANDIDATE, "READY")
    with pytest.raises(ModelError, match="only a READY version can be re-admitted"):
        check_transition("digits:2", Stage.REJECTED, Stage.CANDIDATE, "FAILED")
    with pytest.raises(ModelError, match="allowed from rejected: candidate"):
        check_transition("digits:2", Stage.REJECTED, Stage.CHALLENGER, "READY")
