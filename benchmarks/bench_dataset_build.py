"""Dataset build benchmark: `build_dataset` over N labelled production rows on PostgreSQL.

A throwaway PostgreSQL (durable settings) holds N logged and labelled rows of one model (10% of
the inputs labelled twice, some with conflicting labels); the capture store holds their inputs
(8x8 PNGs); the base is a 300-image Dataset artifact. Prints the time to set up and the build's
wall time, split into the log join + label resolution and the whole build (capture listing,
reading N inputs, TFRecord shards, manifest).

    .venv/bin/python benchmarks/bench_dataset_build.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import numpy as np
    from sqlalchemy import insert

    from ingot import storage
    from ingot.capture import layout
    from ingot.capture.dataset import BuildPolicy, build_dataset, labelled_rows, resolve_labels
    from ingot.inference_log.records import LogRecord
    from ingot.inference_log.schema import feedback_labels
    from ingot.inference_log.store import InferenceLogStore
    from tests.capture.world import CLASSES, MODEL, make_base
    from tests.support.postgres import throwaway_postgres

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    n = args.rows
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp, throwaway_postgres(durable=True) as postgres:
        work = Path(tmp)
        base = make_base(work / "base", per_class=100)
        capture = str(work / "capture")
        t0 = time.perf_counter()
        with InferenceLogStore.from_url(postgres.create_database("build")) as log:
            distinct = int(n / 1.1)
            images = rng.integers(0, 256, size=(distinct, 8, 8, 3), dtype=np.uint8)
            shas = [hashlib.sha256(image.tobytes()).hexdigest() for image in images]
            for sha, image in zip(shas, images):
                storage.write_once(layout.location(capture, MODEL, sha, "png"), layout.encode_png(image))
            labels = rng.integers(0, 3, size=n)
            for lo in range(0, n, 5000):
                records, rows = [], []
                for i in range(lo, min(n, lo + 5000)):
                    ts = start + timedelta(seconds=i)
                    records.append(LogRecord(
                        request_id=f"r{i}", row=0, ts=ts, model=MODEL, experiment=None, variant="champion",
                        assignment="weight", model_version=1, signature="serving_default",
                        input_sha256=shas[i % distinct], predicted_class_id=0, predicted_class_name=CLASSES[0],
                        confidence=0.9, input_mean=None, input_std=None, latency_ms=1.0, status="OK",
                        captured=True))
                    rows.append({"request_id": f"r{i}", "row": 0, "label_id": int(labels[i]),
                                 "label_name": CLASSES[int(labels[i])], "received_at": ts, "model": MODEL,
                                 "experiment": None, "variant": "champion", "model_version": 1, "correct": False})
                log.write(records)
                with log.engine.begin() as conn:
                    conn.execute(insert(feedback_labels), rows)
            setup = time.perf_counter() - t0
            t1 = time.perf_counter()
            joined = labelled_rows(log.engine, MODEL, None, datetime.now(UTC))
            resolved, dropped, majority = resolve_labels(joined, CLASSES)
            join_s = time.perf_counter() - t1
            t2 = time.perf_counter()
            result = build_dataset(model=MODEL, base=base, output=str(work / "out"), log_engine=log.engine,
                                   capture_url=capture, policy=BuildPolicy(holdout_fraction=0.2, production_weight=1))
            build_s = time.perf_counter() - t2
    production = result.sources["production"]
    print(f"setup: {n} labelled rows, {distinct} captured inputs in {setup:.1f} s")
    print(f"join + majority labels: {len(joined)} rows -> {len(resolved)} inputs ({dropped} ties dropped, "
          f"{majority} resolved by majority) in {join_s:.2f} s")
    print(f"build_dataset on PostgreSQL: {build_s:.1f} s for {n} labelled rows "
          f"({n / build_s:,.0f} rows/s); train {result.counts['train']}, holdout {result.counts['production_holdout']}, "
          f"coverage {production['label_coverage']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
