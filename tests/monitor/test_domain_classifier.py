"""The domain-classifier two-sample test on embeddings: known cases (same distribution, shifted
mean, a variance change only the boosted trees can see), its p-value's size, balancing, and
refusals."""

from __future__ import annotations

import numpy as np
import pytest

from ingot.errors import ConfigError
from ingot.monitor.domain_classifier import domain_classifier_test


def test_same_distribution_is_not_flagged_in_most_repeats_and_its_p_values_spread():
    """40 stable pairs at alpha 0.05: about 2 false alarms expected; 6 or more has probability < 1%
    for a valid test. The p-values must spread over (0, 1), not sit at 1 (a test that cannot fire)."""
    p_values = []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        p_values.append(domain_classifier_test(rng.normal(size=(150, 8)), rng.normal(size=(150, 8)), seed=seed).p_value)
    p_values = np.array(p_values)
    assert np.sum(p_values <= 0.05) <= 5, sorted(p_values)[:8]
    assert 0.25 < np.median(p_values) < 0.75
    assert p_values.min() < 0.2


def test_a_shifted_mean_is_detected_with_a_high_auc():
    rng = np.random.default_rng(0)
    result = domain_classifier_test(rng.normal(size=(300, 16)), rng.normal(loc=0.4, size=(300, 16)))
    assert result.p_value < 1e-6
    assert result.auc > 0.75 and result.accuracy > 0.65
    assert (result.rows_each, result.holdout_rows, result.classifier) == (300, 300, "logistic")


def test_boosted_trees_see_a_variance_change_that_a_linear_boundary_cannot():
    rng = np.random.default_rng(1)
    reference, window = rng.normal(size=(400, 4)), rng.normal(scale=2.5, size=(400, 4))
    linear = domain_classifier_test(reference, window)
    trees = domain_classifier_test(reference, window, classifier="gbm")
    assert trees.p_value < 1e-6 and trees.auc > 0.75
    assert linear.auc < trees.auc - 0.15


def test_the_samples_are_balanced_and_the_test_is_seeded():
    rng = np.random.default_rng(2)
    reference, window = rng.normal(size=(900, 6)), rng.normal(size=(120, 6))
    result = domain_classifier_test(reference, window, seed=3)
    assert result.rows_each == 120 and result.holdout_rows == 120
    assert result == domain_classifier_test(reference, window, seed=3)
    assert domain_classifier_test(reference, window, max_rows=50).rows_each == 50


def test_bad_inputs_are_refused_with_a_clear_error():
    rng = np.random.default_rng(3)
    with pytest.raises(ConfigError, match="one d"):
        domain_classifier_test(rng.normal(size=(50, 3)), rng.normal(size=(50, 4)))
    with pytest.raises(ConfigError, match="at least 10 rows"):
        domain_classifier_test(rng.normal(size=(50, 3)), rng.normal(size=(5, 3)))
    with pytest.raises(ConfigError, match="unknown domain classifier 'svm'"):
        domain_classifier_test(rng.normal(size=(50, 3)), rng.normal(size=(50, 3)), classifier="svm")
    with pytest.raises(ConfigError, match="holdout"):
        domain_classifier_test(rng.normal(size=(50, 3)), rng.normal(size=(50, 3)), holdout=1.0)
