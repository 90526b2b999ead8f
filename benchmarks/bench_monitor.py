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


def embedding_cost(baseline: bool = True) -> None:
    """Seconds per embedding check (MMD² with 1,000 permutations, and the domain classifier) by
    rows and dimension, against the one-permutation-at-a-time MMD baseline (minutes; left out
    with `baseline=False`)."""
    from ingot.monitor.domain_classifier import domain_classifier_test
    from ingot.monitor.embedding import mmd_test

    rng = np.random.default_rng(0)
    domain_classifier_test(rng.normal(size=(20, 4)), rng.normal(size=(20, 4)))  # imports scikit-learn once
    print("rows_each  dim  mmd_vectorised_s  mmd_one_at_a_time_s  speedup  classifier_s  both_s")
    for rows, dim in ((500, 64), (1000, 64), (1000, 1280)):
        x, y = rng.normal(size=(rows, dim)), rng.normal(size=(rows, dim))
        started = time.perf_counter()
        mmd_test(x, y, permutations=1000)
        fast = time.perf_counter() - started
        started = time.perf_counter()
        domain_classifier_test(x, y)
        classifier = time.perf_counter() - started
        slow = float("nan")
        if baseline:
            started = time.perf_counter()
            _mmd_one_permutation_at_a_time(x, y, 1000)
            slow = time.perf_counter() - started
        against = f"{slow:20.2f} {slow / fast:8.1f}x" if baseline else f"{'-':>20} {'-':>9}"
        print(f"{rows:9d} {dim:4d} {fast:17.2f} {against} {classifier:13.2f} {fast + classifier:7.2f}")


# --- embedding drift: rows-to-detect per test and per shift ------------------------------------

LABEL_FREE_TESTS = ("class_prior_chi2", "confidence_ks", "input_mean_ks", "input_std_ks", "accuracy_estimate")
EMBEDDING_TESTS = ("embedding_mmd", "embedding_classifier")
SHIFTS = ("mirrored", "translated", "rotated_180", "ood_confident")
SIZES = (25, 50, 100, 150, 200, 300, 400)


class EmbeddingBench:
    """A small digits CNN (two conv blocks, a 64-unit dense embedding, softmax), trained here with
    seed 0 on scikit-learn's digits as 16x16 RGB; 800 training images, 500 validation images (the
    baseline and the reference embeddings), 497 held-out images the windows are drawn from."""

    def __init__(self, epochs: int = 20) -> None:
        import keras

        from ingot.evaluate.drift import DriftBaseline
        from tests.monitor.digits_model import CLASS_NAMES, digit_images

        keras.utils.set_random_seed(0)
        images, labels = digit_images()
        train, validation, live = slice(0, 800), slice(800, 1300), slice(1300, None)
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Rescaling(1 / 255.0)(inputs)
        x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Flatten()(x)
        embedding = keras.layers.Dense(64, activation="relu", name="embedding")(x)
        outputs = keras.layers.Dense(10, activation="softmax")(embedding)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        started = time.perf_counter()
        model.fit(images[train].astype(np.float32), labels[train], epochs=epochs, batch_size=32, verbose=0)
        self.train_seconds = time.perf_counter() - started
        self.model = keras.Model(inputs, [outputs, embedding])
        self.validation_images, self.validation_labels = images[validation], labels[validation]
        probabilities, self.reference = self.run(images[validation])
        self.validation_accuracy = float((probabilities.argmax(axis=1) == labels[validation]).mean())
        self.baseline = DriftBaseline.compute(probabilities, labels[validation], CLASS_NAMES, images[validation])
        self.live = images[live]
        self.live_labels = labels[live]

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, embedding = self.model.predict(images.astype(np.float32), batch_size=256, verbose=0)
        return np.asarray(probabilities, dtype=np.float64), np.asarray(embedding, dtype=np.float64)


def shifted_images(bench: EmbeddingBench, shift: str, rng: np.random.Generator) -> np.ndarray:
    """The held-out images under one shift, row for row."""
    images = bench.live
    if shift == "mirrored":
        return images[:, :, ::-1].copy()
    if shift == "rotated_180":
        return images[:, ::-1, ::-1].copy()
    if shift == "translated":
        moved = np.zeros_like(images)
        for row, image in enumerate(images):
            dy, dx = rng.integers(2, 4, size=2) * rng.choice([-1, 1], size=2)
            moved[row] = np.roll(image, (dy, dx), axis=(0, 1))
            if dy > 0:
                moved[row, :dy] = 0
            else:
                moved[row, dy:] = 0
            if dx > 0:
                moved[row, :, :dx] = 0
            else:
                moved[row, :, dx:] = 0
        return moved
    if shift == "ood_confident":
        # Digits cut in 4x4 blocks and the blocks shuffled: every image keeps its pixel mean and
        # standard deviation exactly; of 8 shuffles per image, the one whose top-1 confidence is
        # closest to the original's is kept, so the confidence distribution stays in place too.
        candidates = []
        for _ in range(8):
            blocks = images.reshape(len(images), 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(len(images), 16, 4, 4, 3)
            order = np.argsort(rng.random((len(images), 16)), axis=1)
            shuffled = np.take_along_axis(blocks, order[:, :, None, None, None], axis=1)
            candidates.append(shuffled.reshape(len(images), 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5)
                              .reshape(images.shape))
        target = bench.run(images)[0].max(axis=1)
        confidences = np.stack([bench.run(c)[0].max(axis=1) for c in candidates])
        best = np.abs(confidences - target).argmin(axis=0)
        return np.stack(candidates)[best, np.arange(len(images))]
    raise ValueError(shift)


class Outputs:
    """What the model and the gateway's logging give for each image of a pool."""

    def __init__(self, bench: EmbeddingBench, images: np.ndarray) -> None:
        self.probabilities, self.embedding = bench.run(images)
        probabilities = self.probabilities
        self.images = images
        self.predicted = probabilities.argmax(axis=1)
        self.confidence = probabilities.max(axis=1)
        self.means, self.stds = input_statistics(images)


def pvalues_of(baseline, reference: np.ndarray, column: Callable[[str], np.ndarray], seed: int,
               permutations: int) -> dict[str, float]:
    """Every test's p-value on one window whose per-row values `column(name)` gives."""
    from ingot.monitor.domain_classifier import domain_classifier_test
    from ingot.monitor.embedding import mmd_test
    from ingot.monitor.statistics import CHECKS, CheckInputs, Measurement, estimate_accuracy

    live = Window.from_values(column("predicted"), column("confidence"), 10, input_means=column("means"),
                              input_stds=column("stds"))
    inputs = CheckInputs(baseline, live, 1, estimate_accuracy(baseline, live), None, None)
    found = {}
    for check in CHECKS:
        if check.__name__ in LABEL_FREE_TESTS:
            measured = check(inputs)
            if isinstance(measured, Measurement):
                found[measured.name] = measured.value
    window = column("embedding")
    found["embedding_mmd"] = mmd_test(reference, window, permutations=permutations, seed=seed).p_value
    found["embedding_classifier"] = domain_classifier_test(reference, window, seed=seed).p_value
    return found


def window_pvalues(bench: EmbeddingBench, clean: Outputs, shifted: Outputs, rows: int, share: float,
                   rng: np.random.Generator, seed: int, permutations: int) -> dict[str, float]:
    """Every test's p-value on one window of `rows` held-out images, `share` of them shifted,
    against the validation split's baseline and reference embeddings."""
    pick = rng.choice(len(bench.live), size=rows, replace=False)
    moved = np.zeros(rows, dtype=bool)
    moved[:round(share * rows)] = True

    def column(name: str) -> np.ndarray:
        return np.where(moved if getattr(clean, name).ndim == 1 else moved[:, None],
                        getattr(shifted, name)[pick], getattr(clean, name)[pick])

    return pvalues_of(bench.baseline, bench.reference, column, seed, permutations)


def stable_pvalues(pool: dict[str, np.ndarray], labels: np.ndarray, rows: int, rng: np.random.Generator,
                   seed: int, permutations: int) -> dict[str, float]:
    """A stable window with an exact null: the 997 validation and held-out images are split at
    random into a reference of 500 (its baseline and reference embeddings computed as the evaluate
    step does) and a disjoint window of `rows`, so each repeat is exchangeable given the images."""
    from ingot.evaluate.drift import DriftBaseline
    from tests.monitor.digits_model import CLASS_NAMES

    order = rng.permutation(len(labels))
    reference, window = order[:500], order[500:500 + rows]
    baseline = DriftBaseline.compute(pool["probabilities"][reference], labels[reference], CLASS_NAMES,
                                     pool["images"][reference])
    return pvalues_of(baseline, pool["embedding"][reference], lambda name: pool[name][window], seed, permutations)


def rows_to_detect(rates: dict[int, float], power: float) -> str:
    for rows in sorted(rates):
        if rates[rows] >= power:
            return str(rows)
    return f">{max(rates)}"


def _earliest(rates: dict[int, float], power: float) -> int:
    return next((rows for rows in sorted(rates) if rates[rows] >= power), 10 ** 9)


def embedding_shifts(repeats: int, stable: int, permutations: int, alpha: float, power: float) -> None:
    """Rows-to-detect per test and per shift, false alarms on stable windows, and the decision
    family rule: an embedding test decides only if the family with it detects no later than the
    family without it on every shift and earlier on at least one."""
    import itertools

    started = time.perf_counter()
    bench = EmbeddingBench()
    print(f"== Embedding drift: small digits CNN (64-d embedding) trained in {bench.train_seconds:.1f} s, "
          f"validation accuracy {bench.validation_accuracy:.3f}; reference {len(bench.reference)} validation "
          f"embeddings; windows drawn without replacement from {len(bench.live)} held-out images")
    rng = np.random.default_rng(0)
    clean = Outputs(bench, bench.live)
    pools = {shift: Outputs(bench, shifted_images(bench, shift, rng)) for shift in SHIFTS}
    tests = LABEL_FREE_TESTS + EMBEDDING_TESTS
    threshold = alpha / len(tests)
    families = {"label-free (5)": LABEL_FREE_TESTS, "+ embedding_mmd": LABEL_FREE_TESTS + ("embedding_mmd",),
                "+ embedding_classifier": LABEL_FREE_TESTS + ("embedding_classifier",), "+ both": tests}
    if repeats > 0:  # 0: only the false alarms and the cost (--repeats 0)
        print(f"  detection: p < alpha/m = {alpha}/{len(tests)} = {threshold:.5f} for every test; rows-to-detect = "
              f"the smallest window (of {', '.join(map(str, SIZES))}) detected in >= {power:.0%} of {repeats} "
              f"seeded windows; MMD with {permutations} permutations")
        for shift in SHIFTS:
            ood = pools[shift]
            print(f"  {shift:<14} mean top-1 confidence {ood.confidence.mean():.3f} (clean {clean.confidence.mean():.3f}); "
                  f"accuracy {float((ood.predicted == bench.live_labels).mean()):.3f}")
        pvalues: dict[tuple[str, float, int], list[dict[str, float]]] = {}
        for shift, share in itertools.product(SHIFTS, (0.3, 1.0)):
            for rows in SIZES:
                pvalues[shift, share, rows] = [
                    window_pvalues(bench, clean, pools[shift], rows, share, np.random.default_rng(1000 * rows + r), r,
                                   permutations)
                    for r in range(repeats)]

        scenarios = list(itertools.product(SHIFTS, (0.3, 1.0)))
        header = f"  {'test':<22}" + "".join(f"{f'{s[:10]} {int(p * 100)}%':>16}" for s, p in scenarios)
        print("\n  rows-to-detect per test (each at alpha/m)")
        print(header)
        for test in tests:
            cells = []
            for shift, share in scenarios:
                rates = {rows: float(np.mean([found[test] < threshold for found in pvalues[shift, share, rows]]))
                         for rows in SIZES}
                cells.append(rows_to_detect(rates, power))
            print(f"  {test:<22}" + "".join(f"{cell:>16}" for cell in cells))

        def family_rates(members: tuple[str, ...]) -> dict[tuple[str, float], dict[int, float]]:
            limit = alpha / len(members)
            return {(shift, share): {rows: float(np.mean([min(found[t] for t in members) < limit
                                                          for found in pvalues[shift, share, rows]]))
                                     for rows in SIZES}
                    for shift, share in scenarios}

        print("\n  rows-to-detect of the decision family (any member below alpha/m, m = its size)")
        print(header.replace("test", "family", 1))
        earliest = {}
        for name, members in families.items():
            rates = family_rates(members)
            earliest[name] = {key: _earliest(value, power) for key, value in rates.items()}
            print(f"  {name:<22}" + "".join(f"{rows_to_detect(rates[key], power):>16}" for key in scenarios))
        def adds(with_it: str, without: str) -> tuple[bool, list[str]]:
            mine, other = earliest[with_it], earliest[without]
            return (all(mine[key] <= other[key] for key in scenarios),
                    [f"{s} {int(p * 100)}%" for s, p in scenarios if mine[(s, p)] < other[(s, p)]])

        # Each embedding test against the family it would join: the label-free tests plus the other
        # embedding test when that one is kept (the stronger, by shifts detected earlier, is judged first).
        alone = {test: adds(f"+ {test}", "label-free (5)") for test in EMBEDDING_TESTS}
        order = sorted(EMBEDDING_TESTS, key=lambda test: -len(alone[test][1]))
        kept: list[str] = []
        for test in order:
            without = f"+ {kept[0]}" if kept else "label-free (5)"
            with_it = "+ both" if kept else f"+ {test}"
            never_later, earlier = adds(with_it, without)
            verdict = "decides" if never_later and earlier else "advisory"
            if verdict == "decides":
                kept.append(test)
            print(f"  rule: {test:<22} vs {without:<22} never later: {never_later}; earlier on: "
                  f"{', '.join(earlier) or 'none'} -> {verdict}")

    print(f"\n== False alarms on stable windows ({stable} seeded repeats per size)")
    validation = Outputs(bench, bench.validation_images)
    pool = {name: np.concatenate([getattr(validation, name), getattr(clean, name)])
            for name in ("probabilities", "embedding", "images", "predicted", "confidence", "means", "stds")}
    pool_labels = np.concatenate([bench.validation_labels, bench.live_labels])
    for kind in ("fixed reference", "random split"):
        print(f"  {kind}: " + ("windows drawn from the held-out images against the one validation reference "
                               "(repeats share images, so they are correlated)" if kind == "fixed reference" else
                               "reference and window drawn disjoint from the 997 validation + held-out images "
                               "each repeat (an exact null)"))
        for rows in (200, 400):
            if kind == "fixed reference":
                stable_p = [window_pvalues(bench, clean, clean, rows, 0.0,
                                           np.random.default_rng(900_000 + 1000 * rows + s), s, permutations)
                            for s in range(stable)]
            else:
                stable_p = [stable_pvalues(pool, pool_labels, rows, np.random.default_rng(700_000 + 1000 * rows + s),
                                           s, permutations) for s in range(stable)]
            for test in EMBEDDING_TESTS:
                values = np.array([found[test] for found in stable_p])
                print(f"    {rows} rows  {test:<22} p<=0.05: {np.mean(values <= 0.05):5.1%}   "
                      f"p<alpha/m ({threshold:.5f}): {np.mean(values < threshold):5.1%}   smallest p {values.min():.4f}")
            for name, members in families.items():
                limit = alpha / len(members)
                rate = np.mean([min(found[t] for t in members) < limit for found in stable_p])
                print(f"    {rows} rows  family {name:<22} drift: {rate:5.1%} (family-wise alpha {alpha})")
    print(f"  (whole run {time.perf_counter() - started:.0f} s)")
    print("\n== Cost of the embedding tests, one check (the one-at-a-time baseline: --embedding-cost)")
    embedding_cost(baseline=False)


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
    parser.add_argument("--embedding-shifts", action="store_true",
                        help="only the embedding tests: rows-to-detect per test and shift, false alarms, the family rule")
    parser.add_argument("--repeats", type=int, default=10, help="seeded windows per shift and size (--embedding-shifts)")
    parser.add_argument("--permutations", type=int, default=1000, help="MMD permutations (--embedding-shifts)")
    args = parser.parse_args()
    if args.embedding_shifts:
        embedding_shifts(args.repeats, args.stable_windows // 2, args.permutations, 0.01, 0.8)
        return
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
