"""Paired comparisons and confidence-bound floors: exact cases by hand, size and power by
simulation, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta, binomtest
from sklearn.metrics import f1_score

from ingot.errors import ConfigError, DataError
from ingot.evaluate.paired import (
    accuracy_difference_interval,
    accuracy_floor,
    class_f1_floors,
    compare_paired,
)

K = 10


def outcomes(champion_only: int, candidate_only: int, both_wrong: int, n: int, k: int = K):
    """Labels and two models' predictions with the given counts of each kind of row."""
    y = np.arange(n) % k
    champion, candidate = y.copy(), y.copy()
    wrong = (y + 1) % k
    cut = np.cumsum([champion_only, candidate_only, both_wrong])
    candidate[: cut[0]] = wrong[: cut[0]]
    champion[cut[0]: cut[1]] = wrong[cut[0]: cut[1]]
    champion[cut[1]: cut[2]] = wrong[cut[1]: cut[2]]
    candidate[cut[1]: cut[2]] = wrong[cut[1]: cut[2]]
    return y, champion, candidate


def simulate_pairs(rng, runs: int, n: int, p_champion_only: float, p_candidate_only: float,
                   p_both_wrong: float, k: int = K):
    """`runs` simulated (labels, champion, candidate) on n rows; a wrong prediction is a random other class."""
    y = np.broadcast_to(np.arange(n) % k, (runs, n))
    p_both_right = 1 - p_champion_only - p_candidate_only - p_both_wrong
    kind = rng.choice(4, size=(runs, n), p=[p_both_right, p_champion_only, p_candidate_only, p_both_wrong])
    champion_right, candidate_right = np.isin(kind, (0, 1)), np.isin(kind, (0, 2))
    champion = np.where(champion_right, y, (y + rng.integers(1, k, size=(runs, n))) % k)
    candidate = np.where(candidate_right, y, (y + rng.integers(1, k, size=(runs, n))) % k)
    return y, champion, candidate


# --- exact cases by hand ----------------------------------------------------------------------


def test_three_rows_only_the_champion_got_right():
    # c = 0 of d = 3 discordant: the Clopper-Pearson interval for the candidate's share is
    # [0, 1 - (alpha/2)^(1/3)], mapped by d/n (2 pi - 1).
    # The case: champion 5 errors of 270 (0.9815), candidate 8 (0.9704), 5 shared.
    result = compare_paired(*outcomes(3, 0, 5, 270), tolerance=0.01, alpha=0.05)
    upper_share = 1 - 0.025 ** (1 / 3)
    assert result.difference == pytest.approx(-3 / 270)
    assert result.interval == pytest.approx((-3 / 270, 3 / 270 * (2 * upper_share - 1)))
    assert result.interval[1] == pytest.approx(0.004614, abs=1e-6)
    assert (result.n, result.champion_only, result.candidate_only, result.discordant) == (270, 3, 0, 3)
    assert result.champion == pytest.approx(265 / 270) and result.candidate == pytest.approx(262 / 270)
    assert not result.regressed  # 3 images is no evidence of a 1-point regression


def test_twenty_rows_only_the_champion_got_right_is_a_credible_regression():
    result = compare_paired(*outcomes(20, 0, 0, 270), tolerance=0.01, alpha=0.05)
    upper = 20 / 270 * (2 * (1 - 0.025 ** (1 / 20)) - 1)
    assert result.interval[1] == pytest.approx(upper)
    assert upper < -0.01 and result.regressed
    # The same evidence does not show a regression beyond 5 points.
    assert not compare_paired(*outcomes(20, 0, 0, 270), tolerance=0.05, alpha=0.05).regressed


def test_interval_matches_scipys_clopper_pearson_and_is_symmetric_for_ties():
    low, high = accuracy_difference_interval(7, 2, 100, 0.05)
    ci = binomtest(2, 9).proportion_ci(confidence_level=0.95, method="exact")
    assert (float(low), float(high)) == pytest.approx((0.09 * (2 * ci.low - 1), 0.09 * (2 * ci.high - 1)))
    low, high = accuracy_difference_interval(5, 5, 100, 0.05)
    assert float(low) == pytest.approx(-float(high)) and float(high) > 0


def test_models_that_agree_everywhere_differ_by_exactly_zero():
    y, champion, _ = outcomes(0, 0, 9, 270)
    result = compare_paired(y, champion, champion.copy(), tolerance=0.0, alpha=0.05)
    assert result.difference == 0.0 and result.interval == (0.0, 0.0) and not result.regressed


def test_probabilities_are_read_as_their_argmax():
    y, champion, candidate = outcomes(4, 1, 3, 100)
    by_ids = compare_paired(y, champion, candidate, tolerance=0.01, alpha=0.05)
    by_probs = compare_paired(y, np.eye(K)[champion] * 0.9 + 0.01, np.eye(K)[candidate], tolerance=0.01, alpha=0.05)
    assert by_ids == by_probs


def test_text_and_dict_carry_the_interval():
    result = compare_paired(*outcomes(3, 0, 5, 270), tolerance=0.01, alpha=0.05)
    assert result.text() == (
        "accuracy -0.011 vs champion (0.9704 vs 0.9815 on the same 270 rows, 3 discordant), "
        "95% interval [-0.011, +0.005]: no credible regression beyond 0.01"
    )
    values = result.to_dict()
    assert values["interval"] == list(result.interval) and values["discordant"] == 3
    assert values["regressed"] is False and values["metric"] == "accuracy"


def test_bad_inputs_are_refused():
    y, champion, candidate = outcomes(3, 0, 2, 100)
    with pytest.raises(DataError, match="same test rows"):
        compare_paired(y, champion[:-1], candidate, tolerance=0.01, alpha=0.05)
    with pytest.raises(ConfigError, match="alpha"):
        compare_paired(y, champion, candidate, tolerance=0.01, alpha=0.0)
    with pytest.raises(ConfigError, match="metric"):
        compare_paired(y, champion, candidate, tolerance=0.01, alpha=0.05, metric="recall")
    with pytest.raises(DataError, match="out of range"):
        compare_paired(y, champion, candidate, tolerance=0.01, alpha=0.05, metric="macro_f1", num_classes=3)


# --- macro F1: the paired bootstrap -------------------------------------------------------------


def test_macro_f1_difference_is_scikit_learns_and_inside_its_interval():
    y, champion, candidate = outcomes(9, 2, 4, 270)
    result = compare_paired(y, champion, candidate, tolerance=0.01, alpha=0.05, metric="macro_f1")
    expected = f1_score(y, candidate, average="macro") - f1_score(y, champion, average="macro")
    assert result.difference == pytest.approx(expected)
    assert result.interval[0] < result.difference < result.interval[1]
    assert result.method.startswith("paired bootstrap") and result.resamples == 4000 and result.seed == 0


def test_bootstrap_is_deterministic_and_seeded():
    y, champion, candidate = outcomes(9, 2, 4, 270)
    args = dict(tolerance=0.01, alpha=0.05, metric="macro_f1")
    first = compare_paired(y, champion, candidate, **args)
    assert compare_paired(y, champion, candidate, **args) == first
    # Row order carries no information, so it does not change the result either.
    order = np.random.default_rng(5).permutation(y.size)
    assert compare_paired(y[order], champion[order], candidate[order], **args) == first
    assert compare_paired(y, champion, candidate, seed=1, **args).interval != first.interval


def test_bootstrap_interval_width_matches_the_accuracy_interval_for_one_class_errors():
    # With every error confined to one row per class swap, macro F1 moves like accuracy; the
    # bootstrap interval must then be about as wide as the exact one (not degenerate, not huge).
    y, champion, candidate = outcomes(12, 4, 0, 270)
    exact = compare_paired(y, champion, candidate, tolerance=0.01, alpha=0.05)
    boot = compare_paired(y, champion, candidate, tolerance=0.01, alpha=0.05, metric="macro_f1")
    width = lambda r: r.interval[1] - r.interval[0]  # noqa: E731
    assert 0.6 < width(boot) / width(exact) < 1.4


# --- size and power by simulation --------------------------------------------------------------


def accuracy_rejections(rng, runs, n, p_champion_only, p_candidate_only, tolerance=0.01, alpha=0.05):
    b, c, _ = rng.multinomial(n, [p_champion_only, p_candidate_only, 1 - p_champion_only - p_candidate_only],
                              size=runs).T
    _, high = accuracy_difference_interval(b, c, n, alpha)
    return float(np.mean(high < -tolerance))


def test_vectorised_interval_is_what_compare_paired_decides():
    rng = np.random.default_rng(11)
    y, champion, candidate = simulate_pairs(rng, 30, 270, 0.05, 0.01, 0.01)
    for row in range(30):
        result = compare_paired(y[row], champion[row], candidate[row], tolerance=0.01, alpha=0.05)
        low, high = accuracy_difference_interval(result.champion_only, result.candidate_only, 270, 0.05)
        assert result.interval == (float(low), float(high))


@pytest.mark.parametrize("discordant", [0.02, 0.04, 0.08, 0.2])
def test_equal_models_are_rarely_rejected_on_270_rows(discordant):
    rng = np.random.default_rng(21)
    assert accuracy_rejections(rng, 2000, 270, discordant / 2, discordant / 2) <= 0.05


@pytest.mark.parametrize("n", [100, 270, 1000])
def test_size_at_the_tolerance_itself_is_at_most_half_alpha(n):
    # True difference exactly -tolerance: the worst case the gate must still pass; the upper
    # bound of a 95% interval rejects it at most 2.5% of the time (plus simulation noise).
    rng = np.random.default_rng(22)
    assert accuracy_rejections(rng, 4000, n, 0.045, 0.035) <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 4000)


def test_a_six_point_regression_on_270_rows_is_rejected():
    # Champion 0.97, candidate 0.91; the candidate misses most of what the champion misses
    # (2.5 of its 3 points), as retrainings of one recipe do.
    rng = np.random.default_rng(23)
    assert accuracy_rejections(rng, 4000, 270, 0.065, 0.005) >= 0.90


def test_old_fixed_rule_rejects_equal_models_often():
    # The baseline the paired gate replaces: a candidate 1 point or more below on 270 rows.
    rng = np.random.default_rng(24)
    b, c, _ = rng.multinomial(270, [0.02, 0.02, 0.96], size=2000).T
    assert np.mean((c - b) / 270 < -0.01 - 1e-9) > 0.15


def test_macro_f1_bootstrap_size_and_power_on_270_rows():
    rng = np.random.default_rng(25)
    args = dict(tolerance=0.01, alpha=0.05, metric="macro_f1", num_classes=K, resamples=500)

    def rejected(p_champion_only, p_candidate_only, p_both_wrong, runs=100):
        y, champion, candidate = simulate_pairs(rng, runs, 270, p_champion_only, p_candidate_only, p_both_wrong)
        return np.mean([compare_paired(y[i], champion[i], candidate[i], seed=i, **args).regressed
                        for i in range(runs)])

    assert rejected(0.02, 0.02, 0.01) <= 0.05
    assert rejected(0.065, 0.005, 0.025) >= 0.85


# --- floors ------------------------------------------------------------------------------------


def test_accuracy_floor_by_clopper_pearson():
    perfect = accuracy_floor(10, 10, floor=0.9, alpha=0.05)
    assert perfect.interval == pytest.approx((0.025 ** (1 / 10), 1.0))
    assert not perfect.below
    ci = (beta.ppf(0.025, 240, 31), beta.ppf(0.975, 241, 30))
    near = accuracy_floor(240, 270, floor=0.9, alpha=0.05)  # 0.889: below the floor, not credibly
    assert near.interval == pytest.approx(ci) and not near.below
    assert "not credibly below the floor 0.9000" in near.text("accuracy")
    far = accuracy_floor(200, 270, floor=0.9, alpha=0.05)
    assert far.below and "accuracy 0.7407, 95% interval [" in far.text("accuracy")
    with pytest.raises(DataError):
        accuracy_floor(5, 4, floor=0.9, alpha=0.05)


def test_class_f1_floors_fail_only_the_credibly_weak_class():
    y = np.arange(270) % K
    predicted = y.copy()
    weak = np.flatnonzero(y == 3)[:20]  # class 3 found 7 of 27 times: F1 = 14/34
    predicted[weak] = 4 + np.arange(20) % 6  # its misses spread over classes 4..9
    results = class_f1_floors(y, predicted, floor=0.8, alpha=0.05)
    assert [r.name for r in results] == [str(i) for i in range(K)]
    f1 = f1_score(y, predicted, average=None)
    assert [r.value for r in results] == pytest.approx(list(f1))
    assert [r.below for r in results] == [i == 3 for i in range(K)]
    assert results[0].interval == (1.0, 1.0)
    assert results[3].alpha == pytest.approx(0.005)  # Bonferroni over 10 classes
    assert results[3].interval[0] <= results[3].value <= results[3].interval[1]
    assert "99.5% interval" in results[3].text("class 3 F1")
    assert results[3].value == pytest.approx(14 / 34) and results[3].interval[1] < 0.8
    # Class 4 took 4 of the misses (F1 54/58) and its interval reaches below the floor: not a failure.
    assert results[4].interval[0] < 0.8 and not results[4].below
    assert class_f1_floors(y, predicted, floor=0.8, alpha=0.05) == results


def test_class_f1_floors_rarely_fail_classes_sitting_at_the_floor():
    # Ten classes, each right 90% of the time (F1 about 0.9), floor 0.9, 270 rows: the whole
    # family is failed at most alpha of the time; the point-estimate rule fails nearly always.
    rng = np.random.default_rng(26)
    y = np.arange(270) % K
    failed = old = 0
    for i in range(60):
        predicted = np.where(rng.random(270) < 0.9, y, (y + rng.integers(1, K, size=270)) % K)
        results = class_f1_floors(y, predicted, floor=0.9, alpha=0.05, resamples=1000, seed=i)
        failed += any(r.below for r in results)
        old += any(r.value < 0.9 for r in results)
    assert failed / 60 <= 0.05 and old / 60 >= 0.9


def test_accuracy_floor_size_at_the_floor_is_at_most_half_alpha():
    rng = np.random.default_rng(27)
    correct = rng.binomial(270, 0.9, size=4000)
    high = np.array([accuracy_floor(int(k), 270, floor=0.9, alpha=0.05).interval[1] for k in np.unique(correct)])
    below = dict(zip(np.unique(correct), high < 0.9))
    assert np.mean([below[k] for k in correct]) <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 4000)
