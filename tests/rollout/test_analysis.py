"""The decision rules: known vectors, guardrails, health holds, limits and seeded simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingot.errors import ConfigError
from ingot.rollout.analysis import (
    ArmCounts,
    Policy,
    SequentialAnalysis,
    always_valid_halfwidth,
    analyze,
    difference_variance,
    mixture_likelihood_ratio,
)

POLICY = Policy(alpha=0.05, tau=0.05, min_labels=200, margin=0.01)


def test_known_vector_rolls_back_with_statistic_and_interval():
    verdict = analyze(ArmCounts(total=2000, correct=1440), ArmCounts(total=2000, correct=1340), POLICY)
    assert verdict.decision == "rollback"
    assert verdict.likelihood_ratio == pytest.approx(65.2, abs=0.1)
    low, high = verdict.interval
    assert low == pytest.approx(-0.094, abs=0.001)
    assert high == pytest.approx(-0.006, abs=0.001)
    assert verdict.difference == pytest.approx(-0.05)
    assert verdict.p_value == pytest.approx(1 / 65.2, rel=0.01)
    assert "below 0" in verdict.reasons[0]


def test_known_vector_small_difference_continues():
    verdict = analyze(ArmCounts(total=2000, correct=1440), ArmCounts(total=2000, correct=1400), POLICY)
    assert verdict.decision == "continue"
    low, high = verdict.interval
    assert low < -POLICY.margin < 0 < high
    assert "not decided yet" in verdict.reasons[0]


def test_equal_accuracy_with_enough_labels_promotes():
    verdict = analyze(ArmCounts(total=60000, correct=42000), ArmCounts(total=60000, correct=42000), POLICY)
    assert verdict.decision == "promote"
    assert verdict.interval[0] > -POLICY.margin


def test_better_challenger_promotes_early():
    verdict = analyze(ArmCounts(total=1000, correct=600), ArmCounts(total=1000, correct=800), POLICY)
    assert verdict.decision == "promote"


@settings(max_examples=200, deadline=None)
@given(n1=st.integers(0, 199), n2=st.integers(0, 5000), data=st.data())
def test_nothing_is_decided_below_min_labels(n1, n2, data):
    c1 = data.draw(st.integers(0, n1))
    c2 = data.draw(st.integers(0, n2))
    first, second = ArmCounts(total=n1, correct=c1), ArmCounts(total=n2, correct=c2)
    for champion, challenger in ((first, second), (second, first)):
        verdict = analyze(champion, challenger, POLICY)
        assert verdict.decision == "continue"
        assert "waiting for labels" in verdict.reasons[0]


def test_error_cap_rolls_back_without_labels():
    verdict = analyze(ArmCounts(0, 0, requests=500, errors=1), ArmCounts(0, 0, requests=120, errors=12), POLICY)
    assert verdict.decision == "rollback"
    assert any("exceeds the cap" in r for r in verdict.reasons)


def test_error_rate_sequential_test_rolls_back_below_the_cap():
    policy = Policy(max_error_rate=0.5)
    verdict = analyze(ArmCounts(0, 0, requests=5000, errors=10), ArmCounts(0, 0, requests=5000, errors=150), policy)
    assert verdict.decision == "rollback"
    assert any("errors more often" in r for r in verdict.reasons)
    same = analyze(ArmCounts(0, 0, requests=5000, errors=10), ArmCounts(0, 0, requests=5000, errors=12), policy)
    assert same.decision == "continue"


def test_latency_guardrail_needs_enough_requests_and_a_ratio_beyond_tolerance():
    slow = ArmCounts(300, 210, requests=300, p99_latency_ms=40.0)
    fast = ArmCounts(300, 210, requests=300, p99_latency_ms=20.0)
    assert analyze(fast, slow, POLICY).decision == "rollback"
    few = analyze(ArmCounts(300, 210, requests=300, p99_latency_ms=20.0),
                  ArmCounts(150, 100, requests=150, p99_latency_ms=40.0), POLICY)
    assert not any("latency" in r for r in few.reasons)
    within = ArmCounts(300, 210, requests=300, p99_latency_ms=25.0)
    assert not any("latency" in r for r in analyze(fast, within, POLICY).reasons)


def _promotable(assigned_champion: int, assigned_challenger: int) -> tuple[ArmCounts, ArmCounts]:
    champion = ArmCounts(1000, 600, requests=2000, assigned=assigned_champion)
    challenger = ArmCounts(1000, 800, requests=2000, assigned=assigned_challenger)
    return champion, challenger


def test_sample_ratio_mismatch_holds_a_promotion_but_never_rolls_back():
    champion, challenger = _promotable(1800, 200)
    assert analyze(champion, challenger, POLICY, weight=10).decision == "promote"
    held = analyze(champion, challenger, POLICY, weight=50)
    assert held.decision == "continue"
    assert held.holds and "sample-ratio mismatch" in held.holds[0]
    assert held.checks["srm"]["p_value"] < 0.001
    worse = analyze(ArmCounts(2000, 1440, requests=4000, assigned=1800),
                    ArmCounts(2000, 1340, requests=4000, assigned=200), POLICY, weight=50)
    assert worse.decision == "rollback"  # accuracy decides; the mismatch only holds promotions


def test_sample_ratio_check_waits_for_eight_requests_per_arm():
    verdict = analyze(*_promotable(1000, 7), Policy(min_step_requests=1), weight=50)
    assert verdict.checks["srm"]["p_value"] is None
    assert verdict.decision == "promote"


def test_a_weight_step_passes_only_after_serving_enough_requests_in_each_arm():
    held = analyze(*_promotable(1000, 30), POLICY, weight=3)
    assert held.decision == "continue"
    assert any("3% step has served 1000 champion and 30 challenger" in h for h in held.holds)


def test_sticky_only_traffic_passes_its_step_without_a_sample_ratio_test():
    """All callers sticky: no per-request random draws, so no SRM p-value, yet the step has served
    enough requests by weight to pass."""
    champion = ArmCounts(1000, 600, requests=2000, assigned=0, step_requests=1600)
    challenger = ArmCounts(1000, 800, requests=2000, assigned=0, step_requests=400)
    verdict = analyze(champion, challenger, POLICY, weight=20)
    assert verdict.checks["srm"]["p_value"] is None
    assert verdict.decision == "promote"
    starved = analyze(champion, ArmCounts(1000, 800, requests=2000, assigned=0, step_requests=30), POLICY, weight=20)
    assert starved.decision == "continue"
    assert any("20% step has served 1600 champion and 30 challenger" in h for h in starved.holds)


def test_unbalanced_label_arrival_holds_a_promotion():
    champion = ArmCounts(1000, 600, requests=1100)
    challenger = ArmCounts(1000, 800, requests=5000)
    verdict = analyze(champion, challenger, POLICY)
    assert verdict.decision == "continue"
    assert any("labels arrive unevenly" in h for h in verdict.holds)


def test_limits_end_an_undecided_rollout_as_inconclusive():
    policy = Policy(min_labels=200, max_labels=2000, max_duration_s=3600)
    champion, challenger = ArmCounts(2000, 1440), ArmCounts(2000, 1400)
    assert analyze(champion, challenger, policy).decision == "inconclusive"
    young = analyze(ArmCounts(500, 360), ArmCounts(500, 350), policy, elapsed_s=60)
    old = analyze(ArmCounts(500, 360), ArmCounts(500, 350), policy, elapsed_s=7200)
    assert young.decision == "continue"
    assert old.decision == "inconclusive" and "time limit" in old.reasons[-1]


def test_invalid_inputs_name_what_is_expected():
    with pytest.raises(ConfigError, match="correct"):
        ArmCounts(total=10, correct=11)
    with pytest.raises(ConfigError, match="alpha"):
        Policy(alpha=1.5)
    with pytest.raises(ConfigError, match="unknown policy keys"):
        Policy.from_dict({"alfa": 0.1})
    with pytest.raises(ConfigError, match="CORRECT/TOTAL"):
        ArmCounts.parse("1440:2000")
    assert ArmCounts.parse("1440/2000") == ArmCounts(total=2000, correct=1440)


def test_sequential_state_keeps_the_intersection_and_round_trips():
    seq = SequentialAnalysis(POLICY)
    first = seq.look(ArmCounts(2000, 1440), ArmCounts(2000, 1360))
    assert first.decision == "continue"
    # A later look whose own interval would reach 0 still uses the narrower intersection.
    second = seq.look(ArmCounts(2001, 1441), ArmCounts(2001, 1361))
    assert second.interval[1] <= first.interval[1]
    restored = SequentialAnalysis.from_state(POLICY, seq.state())
    assert restored.interval == seq.interval and restored.min_p == seq.min_p and restored.looks == 2


# ----------------------------------------------------------------------------- simulation

LOOK_EVERY = 100
HORIZON = 20_000


def _simulate(rng: np.random.Generator, runs: int, p_champion: float, p_challenger: float):
    """Cumulative labelled counts per arm at each look: arrays of shape (runs, looks)."""
    looks = HORIZON // LOOK_EVERY
    c1 = rng.binomial(LOOK_EVERY, p_champion, size=(runs, looks)).cumsum(axis=1)
    c2 = rng.binomial(LOOK_EVERY, p_challenger, size=(runs, looks)).cumsum(axis=1)
    n = np.arange(1, looks + 1) * LOOK_EVERY
    return c1, c2, np.broadcast_to(n, c1.shape)


def _msprt_rollback(c1, c2, n, policy: Policy):
    """Per run: the first look index at which the running interval lies below 0 (or -1)."""
    diff, var = difference_variance(c1, n, c2, n)
    high = diff + always_valid_halfwidth(var, policy.tau, policy.alpha)
    high = np.where(n >= policy.min_labels, high, np.inf)
    crossed = np.minimum.accumulate(high, axis=1) < 0
    return np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)


def test_peeking_false_rollback_rate_stays_below_alpha_where_naive_z_tests_do_not():
    rng = np.random.default_rng(20261129)
    runs = 1000
    c1, c2, n = _simulate(rng, runs, 0.72, 0.72)
    msprt_rate = float((_msprt_rollback(c1, c2, n, POLICY) >= 0).mean())
    diff, var = difference_variance(c1, n, c2, n)
    z = diff / np.sqrt(var)
    naive_rate = float(((z < -1.6449) & (n >= POLICY.min_labels)).any(axis=1).mean())
    assert msprt_rate <= 0.05
    assert naive_rate > 0.05 * 3  # a one-sided 5% z-test at every look decides wrongly far more often
    # The vectorized rule is the controller's rule: replay a few runs look by look.
    for run in range(20):
        seq = SequentialAnalysis(POLICY)
        decided = -1
        for k in range(n.shape[1]):
            verdict = seq.look(ArmCounts(int(n[run, k]), int(c1[run, k])), ArmCounts(int(n[run, k]), int(c2[run, k])))
            if verdict.decision == "rollback":
                decided = k
                break
        assert decided == _msprt_rollback(c1[run:run + 1], c2[run:run + 1], n[run:run + 1], POLICY)[0]


def test_a_five_point_drop_is_rolled_back_with_high_power():
    rng = np.random.default_rng(7)
    c1, c2, n = _simulate(rng, 1000, 0.72, 0.67)
    first = _msprt_rollback(c1, c2, n, POLICY)
    assert float((first >= 0).mean()) >= 0.90
    assert math.isfinite(float(np.median(n[0, first[first >= 0]])))


def test_statistic_matches_the_interval_boundary():
    # The interval excludes 0 exactly when the statistic reaches 1/alpha (same test, two views).
    diff, var = difference_variance(1440, 2000, 1340, 2000)
    lr = mixture_likelihood_ratio(diff, var, 0.05)
    half = always_valid_halfwidth(var, 0.05, 0.05)
    assert (lr >= 20) == (abs(diff) > half)
