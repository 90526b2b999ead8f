"""Gate figures: false rejections and power of the paired gate against the old fixed-tolerance
rule, by number of test rows, measured in the same run on the same simulated pairs.

A simulated pair is a champion and a candidate scored on the same n rows of 10 balanced classes;
each row is one of: both right, champion alone right, candidate alone right, both wrong (a wrong
prediction is a random other class). The champion scores 0.97, like the digits recipe. Scenarios:

  equal, 4% discordant     equal accuracy; 2% of rows only the champion gets right, 2% only the candidate
  equal, 10% discordant    the same with less correlated models
  at tolerance (-1 pt)     candidate 1 point worse: the worst case the gate must still pass
  -3 pts                   candidate 0.94, its errors include most of the champion's
  -6 pts, shared errors    candidate 0.91, 2.5 of the champion's 3 error points shared
  -6 pts, independent      candidate 0.91, errors independent of the champion's

Old rule: reject when the candidate's point estimate is more than the tolerance below the
champion's. New rule: reject when the 95% interval lies wholly below -tolerance (exact McNemar for
accuracy; seeded paired bootstrap for macro F1). Ratio = new / old.

1. Accuracy alone, every row count, --runs pairs per cell (vectorised, exact).
2. The whole champion comparison (accuracy or macro F1 regressed), --gate-runs pairs per cell.
3. Floors: the overall accuracy floor (exact Clopper-Pearson bound, --runs models per cell) and
   the per-class F1 floor (bootstrap bounds, Bonferroni over 10 classes, --gate-runs models per
   cell), against the old rule (the point estimate below the floor). A simulated model is right
   on a row with a fixed probability (per class for the weak-class scenario), else predicts a
   random other class, so every class's F1 is about its accuracy.
4. The cost of one judged gate decision (floors, per-class bootstrap and both comparisons).

    .venv/bin/python benchmarks/bench_gate.py [--runs 4000] [--gate-runs 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingot.evaluate.gate import GateThresholds, bless
from ingot.evaluate.metrics import evaluate_predictions
from ingot.evaluate.paired import accuracy_difference_interval, class_f1_floors, compare_paired

K = 10
TOLERANCE = 0.01
ALPHA = 0.05
ROWS = (100, 270, 1000, 3000)
# name, (champion alone right, candidate alone right, both wrong); the champion's accuracy is
# 1 - candidate_only - both_wrong = 0.97 in every scenario.
SCENARIOS = {
    "equal, 4% discordant": (0.02, 0.02, 0.01),
    "equal, 10% discordant": (0.05, 0.05, 0.0),
    "at tolerance (-1 pt)": (0.025, 0.015, 0.015),
    "-3 pts": (0.035, 0.005, 0.025),
    "-6 pts, shared errors": (0.065, 0.005, 0.025),
    "-6 pts, independent": (0.0873, 0.0273, 0.0027),
}
NULL = ("equal, 4% discordant", "equal, 10% discordant", "at tolerance (-1 pt)")


def pairs(rng: np.random.Generator, runs: int, n: int, p: tuple[float, float, float]):
    y = np.broadcast_to(np.arange(n) % K, (runs, n))
    kind = rng.choice(4, size=(runs, n), p=[1 - sum(p), *p])
    champion = np.where(np.isin(kind, (0, 1)), y, (y + rng.integers(1, K, size=(runs, n))) % K)
    candidate = np.where(np.isin(kind, (0, 2)), y, (y + rng.integers(1, K, size=(runs, n))) % K)
    return y, champion, candidate


def ratio(new: float, old: float) -> str:
    return f"{new / old:6.2f}" if old > 0 else "   n/a"


def table(title: str, rows: list[tuple[str, int, float, float]], null: tuple[str, ...] = NULL) -> None:
    print(f"\n{title}")
    print(f"{'scenario':<24} {'rows':>5}  {'kind':<17} {'new':>7} {'old':>7} {'new/old':>7}")
    for name, n, new, old in rows:
        kind = "false rejections" if name in null else "power"
        print(f"{name:<24} {n:>5}  {kind:<17} {new:7.2%} {old:7.2%} {ratio(new, old):>7}")


def accuracy_section(runs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for name, p in SCENARIOS.items():
        for n in ROWS:
            b, c, _ = rng.multinomial(n, [p[0], p[1], 1 - p[0] - p[1]], size=runs).T
            _, high = accuracy_difference_interval(b, c, n, ALPHA)
            rows.append((name, n, float(np.mean(high < -TOLERANCE)), float(np.mean((c - b) / n < -TOLERANCE - 1e-9))))
    table(f"1. accuracy vs champion, {runs} pairs per cell (tolerance {TOLERANCE}, alpha {ALPHA})", rows)


def f1_macro(y: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, predicted, labels=list(range(K)), average="macro", zero_division=0))


def gate_section(runs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for name, p in SCENARIOS.items():
        for n in ROWS:
            y, champion, candidate = pairs(rng, runs, n, p)
            new = old = 0
            for i in range(runs):
                regressed = [compare_paired(y[i], champion[i], candidate[i], tolerance=TOLERANCE, alpha=ALPHA,
                                            metric=metric, num_classes=K, resamples=1000, seed=i).regressed
                             for metric in ("accuracy", "macro_f1")]
                new += any(regressed)
                old += (np.mean(candidate[i] == y[i]) < np.mean(champion[i] == y[i]) - TOLERANCE - 1e-9
                        or f1_macro(y[i], candidate[i]) < f1_macro(y[i], champion[i]) - TOLERANCE - 1e-9)
            rows.append((name, n, new / runs, old / runs))
    table(f"2. champion comparison (accuracy or macro F1), {runs} pairs per cell, 1000 bootstrap resamples", rows)


FLOOR_NULL = ("at the floor", "5 pts above")


def floor_section(runs: int, gate_runs: int, seed: int) -> None:
    from scipy.stats import beta

    rng = np.random.default_rng(seed)
    floor, rows = 0.9, []
    for name, accuracy in (("at the floor", 0.9), ("5 pts above", 0.95), ("3 pts below", 0.87)):
        for n in ROWS:
            correct = rng.binomial(n, accuracy, size=runs)
            high = np.where(correct < n, beta.ppf(1 - ALPHA / 2, correct + 1, np.maximum(n - correct, 1)), 1.0)
            rows.append((name, n, float(np.mean(high < floor)), float(np.mean(correct / n < floor - 1e-9))))
    table(f"3a. accuracy floor {floor}, {runs} models per cell (exact Clopper-Pearson bound, alpha {ALPHA})", rows,
          FLOOR_NULL)
    rows = []
    for name, accuracy, weak in (("at the floor", 0.9, 0.9), ("5 pts above", 0.95, 0.95),
                                 ("one class at 0.6", 0.95, 0.6)):
        for n in ROWS:
            y = np.arange(n) % K
            p_right = np.where(y == 3, weak, accuracy)
            new = old = 0
            for i in range(gate_runs):
                predicted = np.where(rng.random(n) < p_right, y, (y + rng.integers(1, K, size=n)) % K)
                result = class_f1_floors(y, predicted, floor=floor, alpha=ALPHA, num_classes=K, seed=i)
                new += any(r.below for r in result)
                old += any(r.value < floor - 1e-9 for r in result)
            rows.append((name, n, new / gate_runs, old / gate_runs))
    table(f"3b. class F1 floor {floor} (any of 10 classes failed), {gate_runs} models per cell "
          "(bootstrap bounds, Bonferroni)", rows, FLOOR_NULL)


def cost_section(seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = [str(i) for i in range(K)]
    print("\n4. one judged gate decision (accuracy floor, 10 class F1 floors, 2 paired comparisons, "
          "4000 resamples)")
    for n in ROWS:
        y, champion, candidate = (a[0] for a in pairs(rng, 1, n, SCENARIOS["equal, 4% discordant"]))
        probabilities = np.eye(K)[candidate]
        report = evaluate_predictions(y, probabilities, names)
        thresholds = GateThresholds(min_accuracy=0.9, min_class_f1=0.7)
        bless(report, thresholds, labels=y, predictions=candidate, champion_predictions=champion)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            bless(report, thresholds, labels=y, predictions=candidate, champion_predictions=champion)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        bless(report, thresholds, {"accuracy": 0.97, "macro_f1": 0.97})
        plain = time.perf_counter() - start
        print(f"  {n:>5} rows: {1000 * float(np.median(times)):7.1f} ms (median of 5); "
              f"point-estimate gate {1000 * plain:5.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--gate-runs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    accuracy_section(args.runs, args.seed)
    gate_section(args.gate_runs, args.seed)
    floor_section(args.runs, args.gate_runs, args.seed)
    cost_section(args.seed)


if __name__ == "__main__":
    main()
