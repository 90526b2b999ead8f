"""What a loop run found (per-stage times, the A/B decision, the drift trigger, the reports) and
the summary `ingot loop` ends with."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    if result.reports:
        lines.append("  reports:")
        lines += [f"    {name}: {path}" for name, path in result.reports.items()]
    if result.stopped:
        lines.append(f"  stopped: {', '.join(result.stopped)}")
    return "\n".join(lines)
