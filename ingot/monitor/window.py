"""A window of the inference log, aggregated in SQL into the bins of the baseline.

The window is the newest `rows` served predictions of a model (`--window N`), or those logged
since a moment (`--since 6h`), of one variant (the champion by default) and optionally one model
version. Only successful rows with a prediction count, and by default only evidence rows (assigned
at random, or sticky by a trusted key: a caller who pins its requests or picks its sticky key
cannot steer the window, nor trigger a retraining). Nothing is sampled: the database returns
one count per (histogram, bucket), each bucket computed by the same arithmetic as
`ingot.evaluate.drift.bucket_index` (floor on PostgreSQL; CAST truncation on SQLite, the same for
the non-negative values logged), plus the number of feedback labels joined to those rows and how
many were correct.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from ingot.errors import ConfigError
from ingot.monitor.statistics import Window

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '6h', '7d', '2w' -> timedelta."""
    match = _DURATION.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"duration {text!r} is not understood; expected a positive number and a unit "
                          "s, m, h, d or w, e.g. 30m, 6h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def bucket_expression(column: Any, low: float, high: float, bins: int, dialect: str) -> Any:
    """SQL for `bucket_index`: the bin of `column` over [low, high) in `bins` bins, clipped."""
    from sqlalchemy import Integer, cast, func

    scaled = (column - float(low)) * float(bins) / float(high - low)
    if dialect == "postgresql":
        return func.least(func.greatest(cast(func.floor(scaled), Integer), 0), bins - 1)
    return func.min(func.max(cast(scaled, Integer), 0), bins - 1)


def read_window(
    engine: Any,
    model: str,
    num_classes: int,
    *,
    rows: int | None = None,
    since: timedelta | None = None,
    variant: str = "champion",
    model_version: int | None = None,
    now: datetime | None = None,
    evidence_only: bool = True,
) -> Window:
    """Aggregate the window in SQL (see the module docstring); `rows` and `since` exclude each other."""
    from sqlalchemy import and_, case, func, literal_column, select, union_all

    from ingot.evaluate.drift import CONFIDENCE_RANGE, INPUT_MEAN_RANGE, INPUT_STD_RANGE
    from ingot.inference_log.schema import OK, feedback_labels, inference_log

    if (rows is None) == (since is None):
        raise ConfigError("give exactly one of a row count (--window N) or a duration (--since DURATION)")
    if rows is not None and rows < 1:
        raise ConfigError(f"--window {rows} must be at least 1 row")
    log = inference_log
    conditions = [log.c.model == model, log.c.variant == variant, log.c.status == OK,
                  log.c.predicted_class_id.is_not(None), log.c.confidence.is_not(None)]
    if model_version is not None:
        conditions.append(log.c.model_version == model_version)
    if evidence_only:
        conditions.append(log.c.evidence.is_(True))
    columns = [log.c.request_id, log.c.row, log.c.ts, log.c.predicted_class_id, log.c.confidence,
               log.c.input_mean, log.c.input_std]
    query = select(*columns).where(*conditions)
    if rows is not None:
        query = query.order_by(log.c.id.desc()).limit(rows)
    else:
        start = (now or datetime.now(UTC)) - since  # type: ignore[operator]
        query = query.where(log.c.ts >= start)
    recent = query.cte("recent")
    dialect = engine.dialect.name
    labels = feedback_labels

    def counts(kind: str, key: Any, present: Any) -> Any:
        return (select(literal_column(f"'{kind}'").label("kind"), key.label("bucket"), func.count().label("n"))
                .select_from(recent).where(present.is_not(None)).group_by(key))

    histograms = {
        "confidence": (recent.c.confidence, CONFIDENCE_RANGE),
        "mean": (recent.c.input_mean, INPUT_MEAN_RANGE),
        "std": (recent.c.input_std, INPUT_STD_RANGE),
    }
    # One statement for every histogram, so the window (the CTE) is computed once, not per histogram.
    everything = union_all(
        counts("class", recent.c.predicted_class_id, recent.c.predicted_class_id),
        *(counts(kind, bucket_expression(column, *spec, dialect), column) for kind, (column, spec) in histograms.items()),
    )
    totals = (select(func.count(), func.min(recent.c.ts), func.max(recent.c.ts), func.count(labels.c.id),
                     func.coalesce(func.sum(case((labels.c.correct, 1), else_=0)), 0))
              .select_from(recent.outerjoin(labels, and_(labels.c.request_id == recent.c.request_id,
                                                         labels.c.row == recent.c.row, labels.c.variant == variant))))
    found: dict[str, list[int]] = {"class": [0] * num_classes,
                                   **{kind: [0] * spec[2] for kind, (_, spec) in histograms.items()}}
    with engine.connect() as conn:
        total, first, last, labelled, correct = conn.execute(totals).one()
        for kind, bucket, count in conn.execute(everything):
            if kind == "class" and not 0 <= int(bucket) < num_classes:
                raise ConfigError(f"the inference log of {model!r} holds class id {bucket}, but the model card "
                                  f"has {num_classes} classes: is the window mixing model versions?")
            found[kind][int(bucket)] = int(count)
    means, stds = found["mean"], found["std"]
    return Window(
        rows=int(total), class_counts=found["class"], confidence_counts=found["confidence"],
        input_mean_counts=means if sum(means) else None, input_std_counts=stds if sum(stds) else None,
        labelled=int(labelled), correct=int(correct),
        start=first.isoformat() if first is not None else None, end=last.isoformat() if last is not None else None,
    )
