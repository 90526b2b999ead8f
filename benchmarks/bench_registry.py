"""Registry insert and lookup times for 10,000 versions on PostgreSQL, with SQLite as the baseline.

Starts a throwaway PostgreSQL (Debian's server, default durable settings: fsync and synchronous
commit on) and a SQLite file registry, and on each:
  * registers N versions one call (one transaction, one commit) at a time,
  * registers N versions of another model in batches through `register_many`,
  * times lookups against the 10,000-version model: get_version, champion, latest,
    champion_metrics, list_versions (newest 20, and all N rows).

    .venv/bin/python benchmarks/bench_registry.py [--versions 10000] [--lookups 1000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingot.registry import NewVersion, Registry  # noqa: E402
from tests.support.postgres import throwaway_postgres  # noqa: E402

BLESSED = {"blessed": True, "reasons": ["accuracy 0.95 >= 0.90"], "checks": []}
CONFIG = {"architecture": "cnn", "epochs": 3, "image_size": [32, 32], "batch_size": 64, "learning_rate": 0.001}
METRICS = {"accuracy": 0.95, "macro_f1": 0.94, "per_class": {str(c): {"precision": 0.9, "recall": 0.9, "f1": 0.9,
                                                                        "support": 36} for c in range(10)}}


def spec(version: int) -> NewVersion:
    return NewVersion(
        version=version, artifact_uri=f"/models/digits/{version}", model_sha256=f"{version:064x}",
        data_hash="d" * 64, config=CONFIG, metrics=METRICS, gate=BLESSED, pipeline_run_id=f"run-{version}",
    )


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def measure(registry: Registry, versions: int, lookups: int, batch: int) -> dict[str, object]:
    results: dict[str, object] = {}
    start = time.perf_counter()
    for version in range(1, versions + 1):
        s = spec(version)
        registry.register_version(
            "digits", version=s.version, artifact_uri=s.artifact_uri, model_sha256=s.model_sha256,
            data_hash=s.data_hash, config=s.config, metrics=s.metrics, gate=s.gate, pipeline_run_id=s.pipeline_run_id,
        )
    results["insert_each_s"] = time.perf_counter() - start

    start = time.perf_counter()
    for first in range(1, versions + 1, batch):
        registry.register_many("digits-batched", [spec(v) for v in range(first, min(first + batch, versions + 1))])
    results["insert_batched_s"] = time.perf_counter() - start

    start = time.perf_counter()
    registry.register_many("digits-batched", [spec(v) for v in range(1, versions + 1)])
    results["reregister_all_s"] = time.perf_counter() - start  # idempotent retry of the whole batch

    registry.mark_ready("digits", 1, verify=lambda uri, sha: True)  # champion
    registry.mark_ready("digits", versions, verify=lambda uri, sha: True)  # candidate
    rng = random.Random(0)
    results["get_version"] = percentiles(timed(lambda: registry.get_version("digits", rng.randint(1, versions)), lookups))
    results["champion"] = percentiles(timed(lambda: registry.champion("digits"), lookups))
    results["latest"] = percentiles(timed(lambda: registry.latest("digits"), lookups))
    results["latest(stage=candidate)"] = percentiles(timed(lambda: registry.latest("digits", stage="candidate"), lookups))
    results["champion_metrics"] = percentiles(timed(lambda: registry.champion_metrics("digits"), lookups))
    results["list_versions(limit=20)"] = percentiles(timed(lambda: registry.list_versions("digits", limit=20), lookups))
    full = max(5, lookups // 50)
    results[f"list_versions(all {versions})"] = percentiles(timed(lambda: registry.list_versions("digits"), full))
    assert len(registry.list_versions("digits")) == versions
    assert registry.champion("digits").version == 1
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=1_000)
    args = parser.parse_args()

    figures: dict[str, dict[str, object]] = {}
    with throwaway_postgres(durable=True) as server:
        with Registry.from_url(server.create_database("bench")) as registry:
            figures["postgresql"] = measure(registry, args.versions, args.lookups, args.batch)
    with tempfile.TemporaryDirectory(prefix="ingot-bench-") as tmp:
        with Registry.from_url(f"sqlite:///{tmp}/registry.db") as registry:
            figures["sqlite"] = measure(registry, args.versions, args.lookups, args.batch)

    pg, lite = figures["postgresql"], figures["sqlite"]
    n = args.versions
    print(f"registry: {n} versions of one model; PostgreSQL 15 (durable defaults) vs SQLite file (WAL) baseline")
    print(f"{'insert':<34}{'PostgreSQL':>22}{'SQLite':>22}{'PG/SQLite':>11}")
    for key, label in (("insert_each_s", "one commit per version"),
                       ("insert_batched_s", f"register_many, batches of {args.batch}"),
                       ("reregister_all_s", "idempotent re-register of all")):
        a, b = float(pg[key]), float(lite[key])  # type: ignore[arg-type]
        print(f"  {label:<32}{a:>8.2f} s {a / n * 1000:>7.3f} ms/v{b:>8.2f} s {b / n * 1000:>7.3f} ms/v{a / b:>10.2f}x")
    print(f"{'lookup (ms)':<34}{'p50':>10}{'p99':>11}{'p50':>11}{'p99':>11}{'PG/SQLite p50':>15}")
    for key in pg:
        if key.endswith("_s"):
            continue
        (a50, a99), (b50, b99) = pg[key], lite[key]  # type: ignore[misc]
        print(f"  {key:<32}{a50:>10.3f}{a99:>11.3f}{b50:>11.3f}{b99:>11.3f}{a50 / b50:>14.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
