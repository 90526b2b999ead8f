"""Scores on a dataset version's production holdout: the newest labelled production rows, never
trained on, where the model meets the traffic it will serve. The evaluate step scores the
candidate and the champion on the same holdout rows (as well as on the base test split); with at
least `MIN_GATE_ROWS` of them the gate's champion comparison is made there instead of on the
base test split, because a retraining that heals drifted traffic may trade a little accuracy on
the old distribution for a lot on the new one, and the new one is what it will be judged on live."""

from __future__ import annotations

from typing import Any

import numpy as np

# 200 paired rows resolve an accuracy difference of about ±0.05 to ±0.07 at 95% (exact McNemar
# interval, a few dozen discordant rows); fewer and the base test split stays the comparison.
MIN_GATE_ROWS = 200


def _accuracy(labels: np.ndarray, predicted: np.ndarray, alpha: float) -> dict[str, Any]:
    from scipy.stats import binomtest

    correct, n = int((labels == predicted).sum()), int(labels.size)
    if n == 0:
        return {"accuracy": None, "correct": 0, "rows": 0, "interval": None}
    interval = binomtest(correct, n).proportion_ci(1 - alpha, method="wilson")
    return {"accuracy": correct / n, "correct": correct, "rows": n,
            "interval": [float(interval.low), float(interval.high)]}


def holdout_scores(labels: Any, candidate: Any, champion: Any | None, *, champion_version: int | None,
                   alpha: float = 0.05) -> dict[str, Any]:
    """The `production_holdout` section of the metrics (model card and registry): both models'
    accuracy with Wilson intervals, their paired difference with its exact McNemar interval, and
    whether the gate compared them here."""
    from ingot.evaluate.paired import accuracy_difference_interval, class_ids

    y = class_ids(labels, name="holdout labels")
    mine = class_ids(candidate, y.size, name="candidate holdout predictions")
    section: dict[str, Any] = {"rows": int(y.size), "min_gate_rows": MIN_GATE_ROWS,
                               "gate_compared_here": champion is not None and y.size >= MIN_GATE_ROWS,
                               "candidate": _accuracy(y, mine, alpha), "champion": None, "difference": None}
    if champion is not None:
        theirs = class_ids(champion, y.size, name="champion holdout predictions")
        section["champion"] = {**_accuracy(y, theirs, alpha), "version": champion_version}
        champion_only = int(((theirs == y) & (mine != y)).sum())
        candidate_only = int(((mine == y) & (theirs != y)).sum())
        low, high = accuracy_difference_interval(champion_only, candidate_only, y.size, alpha)
        section["difference"] = {"value": (candidate_only - champion_only) / y.size if y.size else 0.0,
                                 "interval": [float(low), float(high)], "alpha": alpha}
    return section
