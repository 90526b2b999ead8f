"""`ingot rollout report`: one self-contained HTML page explaining a rollout.

The accuracy trajectory is replayed from the database: cumulative labelled/correct counts per
arm at up to CHECKPOINTS moments between the rollout's start and its end (one grouped COUNT
query each, by label arrival time), run through the same sequential analysis the controller
uses, so the plotted interval narrows exactly as the controller saw it (at that granularity).
Plots are matplotlib PNGs embedded as data URIs (`ingot.reports`, no pyplot).
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, select

from ingot.db import utc_now
from ingot.inference_log.schema import feedback_labels, inference_log
from ingot.rollout.analysis import ArmCounts, Policy, SequentialAnalysis
from ingot.rollout.counts import ARMS, arm_counts
from ingot.storage import atomic_write

if TYPE_CHECKING:
    from ingot.rollout.controller import Controller
    from ingot.rollout.store import Rollout

CHECKPOINTS = 40


def trajectory(controller: Controller, rollout: Rollout, checkpoints: int = CHECKPOINTS) -> list[dict[str, Any]]:
    """Cumulative labelled counts per arm at evenly spaced moments, with the running verdict
    (labels of evidence rows only, as the controller counts them)."""
    start = rollout.created_at
    end = rollout.finished_at or utc_now()
    span = max((end - start).total_seconds(), 1e-3)
    labels, log = feedback_labels, inference_log
    policy = Policy.from_dict(rollout.policy)
    sequential = SequentialAnalysis(policy)
    points = []
    with controller.log_engine.connect() as conn:
        for i in range(1, checkpoints + 1):
            moment: datetime = start + timedelta(seconds=span * i / checkpoints)
            rows = conn.execute(
                select(labels.c.variant, func.count(), func.sum(case((labels.c.correct, 1), else_=0)))
                .select_from(labels.join(log, and_(log.c.request_id == labels.c.request_id,
                                                   log.c.row == labels.c.row, log.c.variant == labels.c.variant)))
                .where(labels.c.model == rollout.model, labels.c.experiment == rollout.experiment,
                       labels.c.variant.in_(ARMS), labels.c.received_at <= moment, log.c.evidence.is_(True))
                .group_by(labels.c.variant)
            ).all()
            found = {variant: (int(total), int(correct or 0)) for variant, total, correct in rows}
            counts = {arm: ArmCounts(total=found.get(arm, (0, 0))[0], correct=found.get(arm, (0, 0))[1]) for arm in ARMS}
            verdict = sequential.look(counts["champion"], counts["challenger"])
            points.append({"at": moment, "counts": counts, "interval": verdict.interval,
                           "difference": verdict.difference, "decision": verdict.decision})
    return points


def plots(rollout: Rollout, points: list[dict[str, Any]], final: dict[str, ArmCounts]) -> dict[str, str]:
    from ingot.reports import figure_data_uri, new_figure

    policy = Policy.from_dict(rollout.policy)
    out: dict[str, str] = {}
    labelled = [p["counts"]["champion"].total + p["counts"]["challenger"].total for p in points]

    figure = new_figure(8, 3.5)
    axis = figure.subplots()
    for arm, colour in (("champion", "tab:blue"), ("challenger", "tab:orange")):
        accuracy = [p["counts"][arm].accuracy for p in points]
        axis.plot(labelled, [a if a is not None else float("nan") for a in accuracy], label=arm, color=colour)
    axis.set_xlabel("labelled rows (both arms)")
    axis.set_ylabel("accuracy")
    axis.set_title("Accuracy per arm as labels accumulate")
    axis.legend()
    out["accuracy"] = figure_data_uri(figure, tight=True)

    figure = new_figure(8, 3.5)
    axis = figure.subplots()
    usable = [(x, p) for x, p in zip(labelled, points) if p["interval"] is not None
              and min(p["counts"][a].total for a in ARMS) >= policy.min_labels]
    if usable:
        xs = [x for x, _ in usable]
        axis.fill_between(xs, [p["interval"][0] for _, p in usable], [p["interval"][1] for _, p in usable],
                          alpha=0.3, label=f"always-valid {1 - policy.alpha:.0%} interval (intersected)")
        axis.plot(xs, [p["difference"] for _, p in usable], color="black", label="observed difference")
        decided = next((x for x, p in usable if p["decision"] in ("promote", "rollback")), None)
        if decided is not None:
            axis.axvline(decided, color="tab:red", linestyle=":", label="accuracy decision point")
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.axhline(-policy.margin, color="tab:green", linestyle="--", linewidth=0.8, label=f"-margin ({policy.margin})")
    axis.set_xlabel("labelled rows (both arms)")
    axis.set_ylabel("challenger - champion accuracy")
    axis.set_title("The difference and its always-valid interval")
    axis.legend(fontsize=8)
    out["interval"] = figure_data_uri(figure, tight=True)

    figure = new_figure(8, 3)
    left, right = figure.subplots(1, 2)
    left.bar(list(ARMS), [final[a].error_rate or 0.0 for a in ARMS], color=["tab:blue", "tab:orange"])
    left.axhline(policy.max_error_rate, color="tab:red", linestyle="--", linewidth=0.8, label="cap")
    left.set_title("error rate")
    left.legend(fontsize=8)
    positions = list(range(len(ARMS)))
    right.bar([x - 0.2 for x in positions], [final[a].p50_latency_ms or 0.0 for a in ARMS], 0.4, color="tab:gray",
              label="p50")
    right.bar([x + 0.2 for x in positions], [final[a].p99_latency_ms or 0.0 for a in ARMS], 0.4,
              color="tab:purple", label="p99")
    right.set_xticks(positions, list(ARMS))
    right.set_title("latency (ms)")
    right.legend(fontsize=8)
    out["guardrails"] = figure_data_uri(figure, tight=True)
    return out


def render(controller: Controller, rollout: Rollout) -> str:
    full = controller.store.get(rollout.id)
    final = arm_counts(controller.log_engine, rollout.model, rollout.experiment, step_since=rollout.step_started_at)
    points = trajectory(controller, rollout)
    images = plots(rollout, points, final)
    e = html.escape
    deciding = next((t for t in reversed(full.transitions) if t.to_state in ("promoting", "rolling_back")), None)
    verdict = (deciding.evidence.get("verdict") if deciding else None) or rollout.verdict or {}
    srm = (verdict.get("checks") or {}).get("srm") or {}
    rows = "".join(
        f"<tr><td>{e(arm)}</td><td>{c.requests}</td><td>{c.total}</td><td>{_pct(c.accuracy)}</td>"
        f"<td>{_pct(c.error_rate)}</td><td>{_num(c.p50_latency_ms)}</td><td>{_num(c.p99_latency_ms)}</td></tr>"
        for arm, c in final.items())
    history = "".join(
        f"<tr><td>{e(t.at.isoformat(timespec='seconds'))}</td><td>{e(t.from_state or '')}</td><td>{e(t.to_state)}</td>"
        f"<td>{t.weight if t.weight is not None else ''}</td><td>{e(t.actor)}</td><td>{e(t.reason)}</td></tr>"
        for t in full.transitions)
    interval = verdict.get("interval")
    summary = (f"difference {verdict['difference']:+.4f}, always-valid interval [{interval[0]:+.4f}, {interval[1]:+.4f}], "
               f"mSPRT statistic {verdict.get('likelihood_ratio', 0):.4g}") if interval and verdict.get("difference") is not None else "no interval yet"
    srm_text = (f"chi-square p = {srm['p_value']:.3g} (holds a promotion below {srm.get('threshold')})"
                if srm.get("p_value") is not None else "not computed (too few assigned requests or no weight)")
    reasons = "".join(f"<li>{e(r)}</li>" for r in (verdict.get("reasons") or [deciding.reason if deciding else "undecided"]))
    first = full.transitions[0] if full.transitions else None
    started = f"<p>Started by <b>{e(first.actor)}</b>: {e(first.reason)}</p>" if first is not None else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rollout #{rollout.id}: {e(rollout.model)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>Rollout #{rollout.id}: {e(rollout.model)} v{rollout.challenger_version} vs v{rollout.champion_version}</h1>
<p>Experiment <code>{e(rollout.experiment)}</code>, state <b>{e(rollout.state)}</b>, steps {e(str(rollout.steps))}.</p>
{started}
<h2>Decision</h2><p><b>{e(str(verdict.get('decision', rollout.state)))}</b>: {e(summary)}</p><ul>{reasons}</ul>
<h2>Per arm</h2><table><tr><th>arm</th><th>requests</th><th>labelled</th><th>accuracy</th><th>error rate</th><th>p50 ms</th><th>p99 ms</th></tr>{rows}</table>
<p>Sample-ratio check: {e(srm_text)}.</p>
<h2>Accuracy as labels accumulate</h2><img alt="accuracy per arm" src="{images['accuracy']}">
<h2>Difference and always-valid interval</h2><img alt="interval" src="{images['interval']}">
<h2>Guardrails</h2><img alt="error rate and latency" src="{images['guardrails']}">
<h2>History</h2><table><tr><th>at</th><th>from</th><th>to</th><th>weight</th><th>actor</th><th>reason</th></tr>{history}</table>
</body></html>
"""


def write_report(controller: Controller, rollout: Rollout, output: Path) -> None:
    atomic_write(output, render(controller, rollout))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
