"""What a loop run found (per-stage times, the A/B decision, the drift trigger, the reports) and
the summary `ingot loop` ends with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageTime:
    name: str
    seconds: float


@dataclass
class LoopResult:
    champion_before: int | None = None
    challenger: int | None = None
    decision: str | None = None
    champion_after: int | None = None
    ab_requests: int = 0
    ab_rows: int = 0
    ab_failed: int = 0
    ab_labelled: int = 0
    decision_labels: dict[str, int] = field(default_factory=dict)
    drift_rows_to_trigger: int | None = None
    trigger_state: str | None = None
    triggered_version: int | None = None
    # The healing: the triggered version's figures, the dataset version it trained on, the A/B
    # test against the old champion on the drifted stream, and live accuracy per stretch of traffic.
    triggered_metrics: dict[str, Any] = field(default_factory=dict)
    dataset_version: int | None = None
    production_rows: dict[str, Any] = field(default_factory=dict)
    production_window: dict[str, Any] | None = None
    heal_decision: str | None = None
    heal_labels: dict[str, int] = field(default_factory=dict)  # labelled rows per arm at the healing decision
    champion_final: int | None = None
    healed_after_s: float | None = None
    live_accuracy: dict[str, tuple[float | None, int]] = field(default_factory=dict)
    live_accuracy_drifted: dict[str, tuple[float | None, int]] = field(default_factory=dict)
    stages: list[StageTime] = field(default_factory=list)
    reports: dict[str, str] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)


def format_summary(result: LoopResult, *, wall_s: float) -> str:
    lines = ["", "== 5/5 Summary"]
    for stage in result.stages:
        lines.append(f"  {stage.name:<24}{stage.seconds:7.1f} s")
    lines.append(f"  {'total':<24}{wall_s:7.1f} s")
    if result.challenger is not None:
        labels = ", ".join(f"{arm} {n}" for arm, n in result.decision_labels.items())
        lines += [
            f"  A/B: champion v{result.champion_before} vs challenger v{result.challenger}: {result.decision}"
            f" (labelled rows at the decision: {labels or 'n/a'}); champion now v{result.champion_after}",
            f"  traffic: {result.ab_requests} requests, {result.ab_rows} rows, {result.ab_labelled} labelled, "
            f"{result.ab_failed} failed",
        ]
        if result.drift_rows_to_trigger is not None:
            lines.append(f"  drift: flagged {result.drift_rows_to_trigger} rows after it began; retraining "
                         f"{result.trigger_state}" + (f" (new version {result.triggered_version})"
                                                      if result.triggered_version else ""))
    if result.triggered_version is not None:
        lines += _healing(result)
    if result.reports:
        lines.append("  reports:")
        lines += [f"    {name}: {path}" for name, path in result.reports.items()]
    if result.stopped:
        lines.append(f"  stopped: {', '.join(result.stopped)}")
    return "\n".join(lines)


def _accuracy(value: tuple[float | None, int] | None) -> str:
    if not value or value[0] is None:
        return "n/a"
    return f"{value[0]:.3f} ({value[1]} rows)"


def _healing(result: LoopResult) -> list[str]:
    lines = []
    rows = result.production_rows
    if result.dataset_version is not None:
        lines.append(f"  production data: dataset version {result.dataset_version}: {rows.get('train_rows')} labelled "
                     f"production rows trained on, {rows.get('holdout_rows')} held out (of {rows.get('labelled_inputs')} "
                     f"labelled inputs; {rows.get('older_dropped') or 0} older ones left out)")
    holdout = result.triggered_metrics.get("production_holdout") or {}
    if holdout:
        champion = holdout.get("champion") or {}
        lines.append(f"  production holdout ({holdout.get('rows')} rows): v{result.triggered_version} "
                     f"{(holdout.get('candidate') or {}).get('accuracy', 0):.3f} vs champion "
                     f"v{champion.get('version')} {champion.get('accuracy') or 0:.3f}"
                     + (" (the gate compared them here)" if holdout.get("gate_compared_here") else ""))
    if result.heal_decision is not None:
        labels = ", ".join(f"{arm} {n}" for arm, n in result.heal_labels.items())
        lines.append(f"  healing A/B: v{result.triggered_version} vs champion v{result.champion_after}: "
                     f"{result.heal_decision} (labelled rows at the decision: {labels or 'n/a'}); "
                     f"champion now v{result.champion_final}")
    if result.healed_after_s is not None:
        lines.append(f"  drift start -> healed champion serving: {result.healed_after_s:.0f} s")
    if result.live_accuracy:
        lines.append("  live accuracy (all rows | drifted rows only):")
        for phase, value in result.live_accuracy.items():
            lines.append(f"    {phase:<26}{_accuracy(value):<22}| {_accuracy(result.live_accuracy_drifted.get(phase))}")
    return lines
