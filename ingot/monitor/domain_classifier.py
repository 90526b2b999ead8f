"""A classifier two-sample test on embeddings (Evidently's default embedding-drift method, with a
p-value): train a classifier to tell the window's embeddings from the reference's; if it can, on
rows it never saw, the two samples differ.

The p-value must be valid at the Bonferroni threshold, so the test holds out rows rather than
cross-validating: out-of-fold scores of k-fold cross-validation are correlated across folds, and a
rank or binomial test on them is anti-conservative (10-12% false alarms at alpha 0.05 on 200 vs 200
64-d Gaussians in a one-off comparison; docs/monitor.md). With one stratified split the fitted classifier is independent
of the held-out half, so under the null its held-out scores are exchangeable between the two
samples and the one-sided Mann-Whitney U test of them (the AUC's own test: AUC = U / (n m)) is
exact up to ties. Both samples are first subsampled (seeded) to the same size, so the classifier
cannot win by learning the class balance.

scikit-learn only (no TensorFlow): a standardised logistic regression by default, or a histogram
gradient-boosting classifier (`classifier="gbm"`) for non-linear boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ingot.errors import ConfigError

DEFAULT_MAX_ROWS = 1000      # each side is subsampled to at most this many rows
DEFAULT_HOLDOUT = 0.5        # the share of the balanced sample the classifier is scored on
DEFAULT_SEED = 0
CLASSIFIERS = ("logistic", "gbm")
EVIDENTLY_AUC_THRESHOLD = 0.55  # Evidently's default: AUC above this reads as drift (shown, not used)


@dataclass(frozen=True)
class DomainClassifierResult:
    auc: float               # held-out ROC AUC of "window" vs "reference" (0.5: indistinguishable)
    p_value: float           # one-sided Mann-Whitney U of the held-out scores (AUC > 0.5)
    accuracy: float          # held-out accuracy at 0.5, for reading
    classifier: str
    rows_each: int           # rows per side after balancing
    holdout_rows: int        # rows the AUC is measured on (both sides)


def _model(classifier: str, seed: int) -> Any:
    if classifier == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
    if classifier == "gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=seed)
    raise ConfigError(f"unknown domain classifier {classifier!r}; expected one of {', '.join(CLASSIFIERS)}")


def domain_classifier_test(reference: np.ndarray, window: np.ndarray, *, classifier: str = "logistic",
                           holdout: float = DEFAULT_HOLDOUT, seed: int = DEFAULT_SEED,
                           max_rows: int = DEFAULT_MAX_ROWS) -> DomainClassifierResult:
    """Can a classifier tell `window` rows from `reference` rows (both [rows, d]) on held-out rows?"""
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(window, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ConfigError(f"embeddings must be two [rows, d] arrays of one d, got {x.shape} and {y.shape}")
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"holdout={holdout} must be between 0 and 1")
    rows = min(x.shape[0], y.shape[0], max_rows)
    if rows < 10:
        raise ConfigError("the domain classifier test needs at least 10 rows on each side")
    rng = np.random.default_rng(seed)
    x = x[np.sort(rng.choice(x.shape[0], size=rows, replace=False))]
    y = y[np.sort(rng.choice(y.shape[0], size=rows, replace=False))]
    features = np.vstack([x, y])
    labels = np.r_[np.zeros(rows, dtype=np.int64), np.ones(rows, dtype=np.int64)]
    fit_x, test_x, fit_y, test_y = train_test_split(features, labels, test_size=holdout, stratify=labels,
                                                    random_state=seed)
    model = _model(classifier, seed).fit(fit_x, fit_y)
    scores = model.predict_proba(test_x)[:, 1]
    auc = float(roc_auc_score(test_y, scores))
    p_value = float(mannwhitneyu(scores[test_y == 1], scores[test_y == 0], alternative="greater").pvalue)
    accuracy = float(np.mean((scores > 0.5) == (test_y == 1)))
    return DomainClassifierResult(auc, p_value, accuracy, classifier, rows, int(test_y.size))
