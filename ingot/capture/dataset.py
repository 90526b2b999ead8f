"""`ingot data build`: labelled production inputs + a base Dataset artifact → a new dataset version.

One function, `build_dataset`, used by the CLI and usable as a pipeline step:

1. Join `feedback_labels` with the served `inference_log` rows of MODEL whose request time lies in
   the window, keeping each row's `input_sha256`.
2. Refuse label names the model does not have (the base dataset's class names), naming them.
3. Deduplicate by hash: one input labelled several times gets the majority label; a tie is
   dropped and counted (`conflicts_dropped`).
4. Keep hashes whose input is in the capture store (`label coverage` = kept / labelled).
5. Split by time: the newest `holdout_fraction` of the rows (by the latest request that sent the
   input) is the `production_holdout` split, never trained on; base records whose hash is in the
   holdout are dropped too, so no holdout input reaches training by any route.
6. With `max_rows`, only the newest that many inputs are kept (a rolling window by count; the
   older ones are counted as `older_dropped`).
7. Merge: base train + production rows repeated `production_weight` times in train; base
   validation and test as they are. `min_per_class` refuses a window where some class has fewer
   production training rows.

The output is the same self-contained TFRecord Dataset artifact the ingest step writes
(ingot.data.records), with `sources` in its manifest, and its content hash covers every split.
The same inputs always give the same artifact and hash.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ingot import storage
from ingot.errors import DataError

HOLDOUT = "production_holdout"
DEFAULT_HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class BuildPolicy:
    """How production rows are merged with the base dataset (stated in the manifest)."""

    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    production_weight: int = 1  # each production training row appears this many times in train
    min_per_class: int = 0  # fewer production training rows in any class: the build is refused
    max_rows: int | None = None  # only the newest this many labelled inputs (a rolling window by count)

    def __post_init__(self) -> None:
        if not 0 <= self.holdout_fraction < 1:
            raise DataError(f"holdout fraction {self.holdout_fraction} is not valid; expected 0 <= f < 1")
        if isinstance(self.production_weight, bool) or not isinstance(self.production_weight, int) \
                or self.production_weight < 1:
            raise DataError(f"production weight {self.production_weight!r} is not valid; expected an integer >= 1 "
                            "(rows are repeated, so the trainer needs no sample weights)")
        if self.min_per_class < 0:
            raise DataError(f"min per class {self.min_per_class} is not valid; expected >= 0")
        if self.max_rows is not None and self.max_rows < 1:
            raise DataError(f"max rows {self.max_rows} is not valid; expected >= 1 (or none: every row)")


@dataclass(frozen=True)
class ProductionRow:
    sha256: str
    label: int
    seen: datetime  # the latest request time that sent this input
    location: str


@dataclass
class BuildResult:
    directory: str
    content_hash: str
    sources: dict[str, Any]
    counts: dict[str, int]
    train_hashes: set[str] = field(default_factory=set, repr=False)
    holdout_hashes: set[str] = field(default_factory=set, repr=False)


def labelled_rows(engine: Any, model: str, since: datetime | None, until: datetime) -> list[tuple[str, str, int, Any]]:
    """(input_sha256, label_name, label_id, request ts) of every labelled, served row in the window."""
    from sqlalchemy import and_, select

    from ingot.inference_log.schema import feedback_labels as fl
    from ingot.inference_log.schema import inference_log as il

    condition = and_(fl.c.model == model, il.c.input_sha256.is_not(None), il.c.ts <= until)
    if since is not None:
        condition = and_(condition, il.c.ts >= since)
    query = (
        select(il.c.input_sha256, fl.c.label_name, fl.c.label_id, il.c.ts)
        .select_from(fl.join(il, and_(il.c.request_id == fl.c.request_id, il.c.row == fl.c.row,
                                      il.c.variant == fl.c.variant)))
        .where(condition)
    )
    with engine.connect() as conn:
        return [(row[0], row[1], int(row[2]), row[3]) for row in conn.execute(query)]


def resolve_labels(rows: list[tuple[str, str, int, Any]], class_names: list[str]) -> tuple[
        dict[str, tuple[int, datetime]], int, int]:
    """{sha256: (label index, latest ts)} by majority per hash; (that, conflicts dropped, conflicts
    resolved by majority). DataError when a label names a class the model does not have."""
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({name for _, name, _, _ in rows if name not in index})
    if unknown:
        raise DataError(f"feedback labels name classes the model does not have: {', '.join(map(repr, unknown))}; "
                        f"the model's classes are {', '.join(class_names)}")
    votes: dict[str, Counter[str]] = {}
    seen: dict[str, datetime] = {}
    for sha, name, _, ts in rows:
        votes.setdefault(sha, Counter())[name] += 1
        stamp = _utc(ts)
        if sha not in seen or stamp > seen[sha]:
            seen[sha] = stamp
    resolved: dict[str, tuple[int, datetime]] = {}
    dropped = majority = 0
    for sha, counter in votes.items():
        ranked = counter.most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            dropped += 1
            continue
        if len(ranked) > 1:
            majority += 1
        resolved[sha] = (index[ranked[0][0]], seen[sha])
    return resolved, dropped, majority


def capture_index(capture_url: str, model: str) -> dict[str, str]:
    """{sha256: location} of the model's captured inputs (one listing of the store)."""
    from ingot.capture.reader import stored_inputs

    return {entry.sha256: entry.location for entry in stored_inputs(capture_url, model)}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def build_dataset(*, model: str, base: str, output: str, log_engine: Any, capture_url: str,
                  since: datetime | None = None, until: datetime | None = None,
                  policy: BuildPolicy | None = None, class_names: list[str] | None = None,
                  shard_bytes: int | None = None, base_uri: str | None = None) -> BuildResult:
    """Build the dataset version under `output` (see the module docstring); returns its summary.
    `base_uri`: what `sources.base.uri` names (default `base`), e.g. the dataset a pipeline step
    ingested into a scratch directory that goes away with its pod."""
    from ingot.data.records import (
        ARTIFACT_FORMAT,
        DEFAULT_SHARD_BYTES,
        FEATURE_IMAGE,
        FEATURE_LABEL,
        FEATURE_SHA256,
        MANIFEST_NAME,
        open_dataset_artifact,
        write_examples,
    )
    from ingot.data.splits import SPLIT_NAMES, compute_content_hash

    policy = policy or BuildPolicy()
    until = _utc(until) if until is not None else datetime.now(UTC)
    since = _utc(since) if since is not None else None
    base_artifact = open_dataset_artifact(base)
    names = list(base_artifact.class_names)
    if class_names is not None and list(class_names) != names:
        raise DataError(f"the model's classes ({', '.join(class_names)}) differ from the base dataset's "
                        f"({', '.join(names)}); build from the dataset the model was trained on")

    rows = labelled_rows(log_engine, model, since, until)
    resolved, conflicts_dropped, conflicts_majority = resolve_labels(rows, names)
    stored = capture_index(capture_url, model)
    production = sorted(
        (ProductionRow(sha, label, seen, stored[sha]) for sha, (label, seen) in resolved.items() if sha in stored),
        key=lambda r: (r.seen, r.sha256),
    )
    older_dropped = 0
    if policy.max_rows is not None and len(production) > policy.max_rows:
        older_dropped = len(production) - policy.max_rows
        production = production[older_dropped:]
    holdout_count = math.ceil(len(production) * policy.holdout_fraction) if production else 0
    cut = len(production) - holdout_count
    train_rows, holdout_rows = production[:cut], production[cut:]
    holdout_hashes = {r.sha256 for r in holdout_rows}

    per_class = Counter(names[r.label] for r in train_rows)
    short = [f"{name} ({per_class.get(name, 0)})" for name in names if per_class.get(name, 0) < policy.min_per_class]
    if short:
        raise DataError(f"the window has fewer than {policy.min_per_class} production training rows for "
                        f"{', '.join(short)}; widen the window, lower --min-per-class, or label more")

    def production_examples(part: list[ProductionRow], repeat: int) -> Iterator[tuple[bytes, int, str]]:
        for row in part:
            with storage.open_file(row.location, "rb") as handle:
                data = handle.read()
            for _ in range(repeat):
                yield data, row.label, row.sha256

    dropped_base: Counter[str] = Counter()

    def base_examples(split: str) -> Iterator[tuple[bytes, int, str]]:
        for image, label, sha in getattr(base_artifact, split).examples():
            if sha in holdout_hashes:
                dropped_base[split] += 1
                continue
            yield image, label, sha

    def train_examples() -> Iterator[tuple[bytes, int, str]]:
        yield from base_examples("train")
        yield from production_examples(train_rows, policy.production_weight)

    output = str(output)
    storage.makedirs(output)
    manifest_location = storage.join(output, MANIFEST_NAME)
    storage.remove(manifest_location)  # a re-run: the old artifact stops being complete first
    shard_size = int(shard_bytes or DEFAULT_SHARD_BYTES)
    writers = {"train": train_examples(), "validation": base_examples("validation"),
               "test": base_examples("test"), HOLDOUT: production_examples(holdout_rows, 1)}
    manifest_splits: dict[str, Any] = {}
    records: list[tuple[str, str, str]] = []
    for split in [*SPLIT_NAMES, HOLDOUT]:
        counts: Counter[str] = Counter()

        def counted(examples: Iterator[tuple[bytes, int, str]], split: str = split,
                    counts: Counter[str] = counts) -> Iterator[tuple[bytes, int, str]]:
            for image, label, sha in examples:
                counts[names[label]] += 1
                records.append((split, sha, names[label]))
                yield image, label, sha

        shards = write_examples(counted(writers[split]), output, split, shard_size)
        manifest_splits[split] = {"count": sum(counts.values()),
                                  "class_counts": {name: counts.get(name, 0) for name in names},
                                  "shards": [shard.to_dict() for shard in shards]}
    content_hash = compute_content_hash(records)
    labelled = len(resolved) + conflicts_dropped
    sources = {
        "base": {"uri": base_uri or str(base), "content_hash": base_artifact.content_hash,
                 "rows": {split: len(part) - dropped_base.get(split, 0) for split, part in base_artifact.items()},
                 "dropped_as_holdout": dict(dropped_base)},
        "production": {
            "model": model,
            "window": {"since": since.isoformat() if since else None, "until": until.isoformat()},
            "labelled_rows": len(rows),
            "labelled_inputs": labelled,
            "conflicts_dropped": conflicts_dropped,
            "conflicts_resolved_by_majority": conflicts_majority,
            "captured_inputs": len(production) + older_dropped,
            "older_dropped": older_dropped,
            "label_coverage": round((len(production) + older_dropped) / labelled, 6) if labelled else None,
            "train_rows": len(train_rows),
            "holdout_rows": len(holdout_rows),
            "holdout_from": holdout_rows[0].seen.isoformat() if holdout_rows else None,
            "class_counts": {"train": {n: per_class.get(n, 0) for n in names},
                             HOLDOUT: {n: sum(1 for r in holdout_rows if r.label == i) for i, n in enumerate(names)}},
        },
        "policy": {"holdout_fraction": policy.holdout_fraction, "production_weight": policy.production_weight,
                   "min_per_class": policy.min_per_class,
                   **({"max_rows": policy.max_rows} if policy.max_rows is not None else {})},
    }
    split_counts = {split: int(entry["count"]) for split, entry in manifest_splits.items()}
    manifest = {
        "format": ARTIFACT_FORMAT,
        "source": f"dataset-build:{model}",
        "seed": base_artifact.seed,
        "class_names": names,
        "content_hash": content_hash,
        "counts": split_counts,
        "shard_bytes": shard_size,
        "features": {FEATURE_IMAGE: "encoded image bytes as read", FEATURE_LABEL: "class index",
                     FEATURE_SHA256: "sha256 of the source file (the capture store's name for production rows)"},
        "splits": manifest_splits,
        "sources": sources,
        "report": base_artifact.report,  # the base data's report (sizes, formats) for the ingest step
    }
    storage.atomic_write(manifest_location, json.dumps(manifest, indent=1).encode("utf-8") + b"\n")
    return BuildResult(directory=output, content_hash=content_hash, sources=sources,
                       counts=split_counts, train_hashes={r.sha256 for r in train_rows},
                       holdout_hashes=holdout_hashes)
