"""Per-arm counts of one experiment, aggregated by the database over the inference log.

Evidence only: accuracy (labels joined to their rows), requests, errors and latency count only
rows marked `evidence` (a randomised assignment that the assigned model answered: pins, mirror
copies, fallbacks, untrusted sticky keys and caller errors are logged but never count), and an
error is an upstream failure (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED),
never a caller's INVALID_ARGUMENT. A cache hit is evidence of its arm's answer (it was that
arm's) but not of its latency (Redis's speed, not the model's); degraded answers are never
evidence (the gateway logs them so). The sample-ratio check counts what randomisation assigned:
every `weight` row of the step, whatever its outcome.

Nothing here loads rows into Python: requests, errors, step-window assignments, labelled rows
and correct ones are COUNT/SUM aggregates grouped by variant. The p50 and p99 latencies are
PostgreSQL's `percentile_cont(q) WITHIN GROUP (ORDER BY latency_ms)`; SQLite has no percentile
aggregate, so there the database sorts and returns the two rows around the rank
(ORDER BY ... LIMIT 2 OFFSET k), interpolated the same way: two values per arm and quantile
come back. A cascaded arm's rows (ingot.gateway.cascade) are the arm's, whichever model answered:
its percentiles are the whole cascade's.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, false, func, select

from ingot.inference_log.schema import OK, UPSTREAM_FAILURES, feedback_labels, inference_log
from ingot.rollout.analysis import ArmCounts

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

ARMS = ("champion", "challenger")
# Requests split at random per request: independent draws, the units of the sample-ratio check.
RANDOM_ASSIGNMENT = "weight"
# Latency evidence: the arm's own OK answers, not cache hits (Redis's speed, not the model's) and not
# degraded answers (another model's, a stale copy or the default).
_LATENCY_EVIDENCE = (inference_log.c.status == OK, inference_log.c.cache_hit.is_(false()),
                     inference_log.c.degraded.is_(None))


def arm_counts(engine: Engine, model: str, experiment: str, *, step_since: datetime | None = None) -> dict[str, ArmCounts]:
    """ArmCounts for champion and challenger rows of `experiment` (shadow rows never count)."""
    log = inference_log
    in_step = log.c.ts >= step_since if step_since is not None else None

    def step_requests(*condition: Any) -> Any:
        """Distinct requests (not rows: a request of 8 images is one draw) in the step."""
        where = and_(*condition, in_step) if in_step is not None else and_(*condition)
        return func.count(func.distinct(case((where, log.c.request_id), else_=None)))

    evidence = log.c.evidence.is_(True)
    query = (
        select(log.c.variant, func.sum(case((evidence, 1), else_=0)).label("requests"),
               func.sum(case((and_(evidence, log.c.status.in_(UPSTREAM_FAILURES)), 1), else_=0)).label("errors"),
               step_requests(log.c.assignment == RANDOM_ASSIGNMENT).label("assigned"),
               step_requests(evidence).label("step_requests"),
               func.sum(case((and_(evidence, *_LATENCY_EVIDENCE), 1), else_=0)).label("timed"))
        .where(log.c.model == model, log.c.experiment == experiment, log.c.variant.in_(ARMS))
        .group_by(log.c.variant)
    )
    labels = feedback_labels
    label_query = (
        select(labels.c.variant, func.count().label("total"),
               func.sum(case((labels.c.correct, 1), else_=0)).label("correct"))
        .select_from(labels.join(log, and_(log.c.request_id == labels.c.request_id, log.c.row == labels.c.row,
                                           log.c.variant == labels.c.variant)))
        .where(labels.c.model == model, labels.c.experiment == experiment, labels.c.variant.in_(ARMS), evidence)
        .group_by(labels.c.variant)
    )
    with engine.connect() as conn:
        served = {row.variant: row for row in conn.execute(query)}
        labelled = {row.variant: row for row in conn.execute(label_query)}
        result: dict[str, ArmCounts] = {}
        for arm in ARMS:
            s, lab = served.get(arm), labelled.get(arm)
            timed = int(s.timed or 0) if s is not None else 0
            result[arm] = ArmCounts(
                total=int(lab.total) if lab is not None else 0,
                correct=int(lab.correct or 0) if lab is not None else 0,
                requests=int(s.requests or 0) if s is not None else 0,
                errors=int(s.errors or 0) if s is not None else 0,
                assigned=int(s.assigned or 0) if s is not None else 0,
                step_requests=int(s.step_requests or 0) if s is not None else 0,
                p99_latency_ms=_percentile(conn, model, experiment, arm, timed, 0.99) if timed else None,
                p50_latency_ms=_percentile(conn, model, experiment, arm, timed, 0.5) if timed else None,
            )
    return result


def _percentile(conn: Connection, model: str, experiment: str, arm: str, ok_rows: int, q: float) -> float | None:
    log = inference_log
    where = (log.c.model == model, log.c.experiment == experiment, log.c.variant == arm, log.c.evidence.is_(True),
             *_LATENCY_EVIDENCE)
    if conn.dialect.name == "postgresql":
        value = conn.scalar(select(func.percentile_cont(q).within_group(log.c.latency_ms)).where(*where))
    else:  # the same linear interpolation as percentile_cont, from the two rows around the rank
        position = q * (ok_rows - 1)
        lower = math.floor(position)
        pair = list(conn.scalars(select(log.c.latency_ms).where(*where).order_by(log.c.latency_ms)
                                 .limit(2).offset(lower)))
        if not pair:
            return None
        value = pair[0] + (pair[-1] - pair[0]) * (position - lower)
    return float(value) if value is not None else None
