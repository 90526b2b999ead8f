"""Drift monitor figures: detection delay, false alarms on stable traffic, and the cost of one
check over 100,000 inference-log rows on PostgreSQL (SQLite and fetch-everything as baselines).

Detection delay: traffic streams in; a check runs every `--every` rows over the newest `--window`
rows (the CronJob's `--window`), and the delay is the number of rows logged after the shift began
until a check says `drift` (and how many of them carried feedback labels, `--label-rate`).
Scenarios: a class-prior shift (simulated classifier), inverted images (a real tiny Keras model of
scikit-learn's digits, predictions and input statistics as the gateway logs them), and a concept
shift (inputs unchanged, a third of the labels now disagree with the model: only labelled accuracy
can see it). False alarms: the share of disjoint stable windows called `drift`.

    .venv/bin/python benchmarks/bench_monitor.py [--rows 100000] [--window 1000] [--every 50] [--seeds 10] [--cost-only]
    .venv/bin/python benchmarks/bench_monitor.py --embedding-cost   # seconds per MMD² embedding check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingot.evaluate.drift import DriftBaseline, input_statistics  # noqa: E402
from ingot.monitor.statistics import DRIFT, Window, check_window  # noqa: E402


class Stream:
    """Per-row values of a traffic stream: class ids, confidences, input stats, correctness, labelled."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, predicted, confidence, means, stds, correct, labelled) -> None:
        self.parts.append((predicted, confidence, means, stds, correct, labelled))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(np.concatenate(column) for column in zip(*self.parts))


def detection_delay(baseline: DriftBaseline, stream: Stream, shift_at: int, window: int, every: int) -> tuple[int, int] | None:
    """(rows, labelled rows) after `shift_at` until the first check calls drift; None if never."""
    predicted, confidence, means, stds, correct, labelled = stream.arrays()
    for end in range(shift_at + every, len(predicted) + 1, every):
        rows = slice(max(0, end - window), end)
        mask = labelled[rows]
        live = Window.from_values(predicted[rows], confidence[rows], stream.num_classes, input_means=means[rows],
                                  input_stds=stds[rows])
        live.labelled, live.correct = int(mask.sum()), int(correct[rows][mask].sum())
        if check_window(baseline, live).status == DRIFT:
            return end - shift_at, int(labelled[shift_at:end].sum())
    return None


def simulated_stream(seed: int, shift_at: int, total: int, label_rate: float, **shift) -> Stream:
    from tests.monitor.simulate import NUM_CLASSES, draw

    rng = np.random.default_rng(seed)
    stream = Stream(NUM_CLASSES)
    for n, kwargs in ((shift_at, {}), (total - shift_at, shift)):
        batch = draw(n, rng, **kwargs)
        means, stds = input_statistics(batch.images)
        stream.add(batch.predicted, batch.confidence, means, stds, batch.predicted == batch.labels,
                   rng.random(n) < label_rate)
    return stream


def digits_stream(digits, seed: int, shift_at: int, total: int, label_rate: float, shift: str) -> Stream:
    rng = np.random.default_rng(seed)
    stream = Stream(10)
    for n, shifted in ((shift_at, False), (total - shift_at, True)):
        if n == 0:
            continue
        pick = rng.integers(0, len(digits.live_images), size=n)
        images, labels = digits.live_images[pick], digits.live_labels[pick].copy()
        if shifted and shift == "inverted":
            images = 255 - images
        if shifted and shift == "concept":
            flip = rng.random(n) < 1 / 3
            labels[flip] = (labels[flip] + 1) % 10
        predicted, confidence = digits.predict(images)
        means, stds = input_statistics(images)
        stream.add(predicted, confidence, means, stds, predicted == labels, rng.random(n) < label_rate)
    return stream


def summarize(name: str, delays: list[tuple[int, int] | None]) -> None:
    found = [d for d in delays if d is not None]
    missed = len(delays) - len(found)
    if not found:
        print(f"  {name:<34} never flagged in {len(delays)} runs")
        return
    rows = [d[0] for d in found]
    labels = [d[1] for d in found]
    print(f"  {name:<34} rows median {statistics.median(rows):>6.0f} max {max(rows):>6}   "
          f"labelled rows median {statistics.median(labels):>5.0f} max {max(labels):>5}   missed {missed}/{len(delays)}")


def false_alarms(baseline: DriftBaseline, windows: Callable[[int], Window], count: int) -> float:
    return sum(check_window(baseline, windows(seed)).status == DRIFT for seed in range(count)) / count


# --- cost of one check over N rows ------------------------------------------------------------


def fill_log(engine, rows: int) -> None:
    from sqlalchemy import insert

    from ingot.inference_log.schema import inference_log
    from ingot.inference_log.store import InferenceLogStore
    from tests.monitor.simulate import draw

    InferenceLogStore(engine)  # creates the tables (the log's own migrations)
    batch = draw(rows, np.random.default_rng(0))
    means, stds = input_statistics(batch.images)
    predicted, confidence = batch.predicted, batch.confidence
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = [{
        "request_id": f"r{i}", "row": 0, "ts": start + timedelta(seconds=i), "model": "digits", "experiment": None,
        "variant": "champion", "assignment": "weight", "model_version": 1, "signature": "serving_default",
        "input_sha256": None, "predicted_class_id": int(predicted[i]),
        "predicted_class_name": f"c{int(predicted[i])}", "confidence": float(confidence[i]),
        "input_mean": float(means[i]), "input_std": float(stds[i]), "latency_ms": 1.0, "status": "OK",
    } for i in range(rows)]
    with engine.begin() as conn:
        for chunk in range(0, rows, 10_000):
            conn.execute(insert(inference_log), records[chunk:chunk + 10_000])
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE inference_log")


def fetch_everything(engine, rows: int) -> Window:
    """The baseline: pull every row of the window into Python and bin it there."""
    from sqlalchemy import select

    from ingot.inference_log.schema import inference_log as log

    with engine.connect() as conn:
        found = conn.execute(select(log.c.predicted_class_id, log.c.confidence, log.c.input_mean, log.c.input_std)
                             .where(log.c.model == "digits", log.c.variant == "champion", log.c.status == "OK")
                             .order_by(log.c.id.desc()).limit(rows)).all()
    values = np.asarray(found, dtype=np.float64)
    return Window.from_values(values[:, 0].astype(np.int64), values[:, 1], 5, input_means=values[:, 2],
                              input_stds=values[:, 3])


def timed(function: Callable[[], object], repeat: int = 5) -> float:
    function()  # warm: connection pool, statement cache
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def check_cost(rows: int) -> None:
    from ingot.db import normalize_url, open_engine
    from ingot.monitor.window import read_window
    from tests.monitor.simulate import baseline
    from tests.support.postgres import throwaway_postgres

    reference = baseline()
    print(f"\n== Cost of one check over {rows:,} inference-log rows (median of 5)")
    with throwaway_postgres() as server:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            for name, url in (("PostgreSQL", server.create_database("bench_monitor")),
                              ("SQLite", f"sqlite:///{scratch}/log.db")):
                engine = open_engine(normalize_url(url))
                fill_log(engine, rows)
                in_sql = timed(lambda: check_window(reference, read_window(engine, "digits", 5, rows=rows)))
                since = timed(lambda: read_window(engine, "digits", 5, since=timedelta(days=30),
                                                  now=datetime(2026, 1, 3, tzinfo=UTC)))
                fetched = timed(lambda: check_window(reference, fetch_everything(engine, rows)))
                same = read_window(engine, "digits", 5, rows=rows).confidence_counts == \
                    fetch_everything(engine, rows).confidence_counts
                print(f"  {name:<10} aggregate in SQL {in_sql * 1000:7.1f} ms (--since {since * 1000:7.1f} ms);  "
                      f"fetch every row {fetched * 1000:7.1f} ms;  ratio {fetched / in_sql:4.1f}x;  same counts: {same}")
                engine.dispose()


def _mmd_one_permutation_at_a_time(x: np.ndarray, y: np.ndarray, permutations: int, seed: int = 0) -> float:
    """Baseline: the same MMD² permutation test with one kernel-quadratic-form per permutation."""
    z = np.vstack([x, y])
    squared = (z * z).sum(axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * z @ z.T, 0.0)
    kernel = np.exp(-distances / np.median(distances[np.triu_indices(len(z), 1)]))
    n, rng = len(x), np.random.default_rng(seed)

    def statistic(order: np.ndarray) -> float:
        a, b = order[:n], order[n:]
        return float(kernel[np.ix_(a, a)].mean() + kernel[np.ix_(b, b)].mean() - 2 * kernel[np.ix_(a, b)].mean())

    observed = statistic(np.arange(len(z)))
    hits = sum(statistic(rng.permutation(len(z))) >= observed for _ in range(permutations))
    return (1 + hits) / (1 + permutations)


def embedding_cost() -> None:
    """Seconds per embedding check (1,000 permutations) by rows and dimension, against the baseline."""
    from ingot.monitor.embedding import mmd_test

    rng = np.random.default_rng(0)
    print("rows_each  dim  vectorised_s  one_at_a_time_s  speedup")
    for rows, dim in ((500, 64), (1000, 64), (1000, 1280)):
        x, y = rng.normal(size=(rows, dim)), rng.normal(size=(rows, dim))
        started = time.perf_counter()
        mmd_test(x, y, permutations=1000)
        fast = time.perf_counter() - started
        started = time.perf_counter()
        _mmd_one_permutation_at_a_time(x, y, 1000)
        slow = time.perf_counter() - started
        print(f"{rows:9d} {dim:4d} {fast:13.2f} {slow:16.2f} {slow / fast:8.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--label-rate", type=float, default=0.2)
    parser.add_argument("--stable-windows", type=int, default=400)
    parser.add_argument("--cost-only", action="store_true", help="only time one check over --rows rows")
    parser.add_argument("--embedding-cost", action="store_true",
                        help="only time the embedding MMD² test (vectorised vs one permutation at a time)")
    args = parser.parse_args()
    if args.embedding_cost:
        embedding_cost()
        return
    if args.cost_only:
        check_cost(args.rows)
        return

    from tests.monitor.digits_model import train_digits_model
    from tests.monitor.simulate import baseline, draw

    shift_at, total = 2000, 5000
    simulated = baseline()
    print(f"== Detection delay (check every {args.every} rows over the newest {args.window}; "
          f"{args.label_rate:.0%} of rows labelled; {args.seeds} seeded runs each)")
    summarize("class-prior shift (simulated)", [
        detection_delay(simulated, simulated_stream(s, shift_at, total, args.label_rate,
                                                    prior=[0.4, 0.15, 0.15, 0.15, 0.15]),
                        shift_at, args.window, args.every) for s in range(args.seeds)])
    started = time.perf_counter()
    digits = train_digits_model()
    print(f"  (digits model trained in {time.perf_counter() - started:.1f} s; validation accuracy "
          f"{digits.baseline.accuracy:.3f})")
    for shift in ("inverted", "concept"):
        summarize(f"{shift} digits (real model)", [
            detection_delay(digits.baseline, digits_stream(digits, s, shift_at, total, args.label_rate, shift),
                            shift_at, args.window, args.every) for s in range(args.seeds)])

    print(f"\n== False alarms on stable traffic ({args.stable_windows} disjoint windows of {args.window} rows)")
    rate = false_alarms(simulated, lambda s: draw(args.window, np.random.default_rng(10_000 + s)).window(labelled=True),
                        args.stable_windows)
    print(f"  simulated classifier, labelled windows: {rate:.1%} (target <= 5%; Bonferroni family alpha 0.01)")

    def digits_window(seed: int) -> Window:
        stream = digits_stream(digits, 20_000 + seed, args.window, args.window, args.label_rate, "none")
        predicted, confidence, means, stds, correct, labelled = stream.arrays()
        live = Window.from_values(predicted, confidence, 10, input_means=means, input_stds=stds)
        live.labelled, live.correct = int(labelled.sum()), int(correct[labelled].sum())
        return live

    rate = false_alarms(digits.baseline, digits_window, min(args.stable_windows, 100))
    print(f"  digits model, windows resampled from {len(digits.live_images)} held-out images: {rate:.1%}")
    check_cost(args.rows)


if __name__ == "__main__":
    main()
