"""What a check prints (a table) and the HTML report it can write: baseline and live
distributions side by side (matplotlib, embedded as PNG), the accuracy estimate and labelled
accuracy, and each test's verdict."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from ingot.monitor.check import CheckOutcome


def _number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def format_text(outcome: CheckOutcome) -> str:
    result, window = outcome.result, outcome.window
    span = f" ({window.start} .. {window.end})" if window.start else ""
    lines = [f"{outcome.model} (champion version {outcome.champion_version}): {result.status.upper()}",
             f"window: {window.rows} predictions{span}, {window.labelled} with feedback labels"]
    if result.tests:
        lines.append("")
        lines.append(f"{'test':<20} {'statistic':>10} {'p / dist':>10} {'threshold':>10}  verdict")
        for test in result.tests:
            lines.append(f"{test.name:<20} {_number(test.statistic):>10} {_number(test.value):>10} "
                         f"{_number(test.threshold):>10}  {test.verdict}")
        lines.append(f"({_family_note(result)})")
    if result.estimated_accuracy is not None:
        lines.append(f"estimated accuracy (label-free) {_number(result.estimated_accuracy)}; "
                     f"validation {_number(result.validation_accuracy)}")
    if result.labelled_accuracy is not None:
        low, high = result.labelled_interval or (None, None)
        lines.append(f"labelled accuracy {_number(result.labelled_accuracy)} (95% CI {_number(low)}..{_number(high)})")
    lines += [f"note: {note}" for note in result.notes]
    if outcome.trigger is not None:
        lines.append(f"triggered retraining: trigger #{outcome.trigger.id}, {outcome.trigger.backend} run "
                     f"{outcome.trigger.run_id} ({outcome.trigger.log_path})")
    if outcome.refusal:
        lines.append(f"no retraining started: {outcome.refusal}")
    if outcome.trigger_error:
        lines.append(f"retraining could not start: {outcome.trigger_error}")
    return "\n".join(lines)


def _family_note(result: Any) -> str:
    deciding = [t for t in result.tests if t.kind == "p-value" and not t.advisory]
    aside = [t.name for t in result.tests if t.kind == "p-value" and t.advisory]
    note = f"Bonferroni: family-wise alpha {result.alpha} over {len(deciding)} deciding p-value tests; "
    if aside:
        note += f"advisory, reported but never deciding: {', '.join(aside)}; "
    return note + "distances are advisory"


def _fractions(counts: Any) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return counts / counts.sum() if counts.sum() else counts


def _embedding_plot(samples: Any) -> str:
    """Reference and window embeddings projected on the pooled sample's first two principal axes."""
    from ingot.monitor.embedding import project_2d
    from ingot.reports import figure_data_uri, new_figure

    reference, window = project_2d(samples.reference, samples.window)
    figure = new_figure(5.5, 4.5)
    axis = figure.subplots()
    axis.scatter(reference[:, 0], reference[:, 1], s=6, alpha=0.5, color="#4c72b0", label="reference (validation)")
    axis.scatter(window[:, 0], window[:, 1], s=6, alpha=0.5, color="#dd8452", label="captured window")
    axis.set_xlabel("PC 1")
    axis.set_ylabel("PC 2")
    axis.legend(fontsize=8)
    return figure_data_uri(figure, dpi=90, tight=True)


def _history_plot(samples: Any) -> str | None:
    """MMD² and the domain classifier's AUC per time slice of the captured window."""
    from datetime import UTC, datetime

    from ingot.monitor.embedding import embedding_history
    from ingot.reports import figure_data_uri, new_figure

    points = embedding_history(samples)
    if not points:
        return None
    when = [datetime.fromtimestamp(point.until, UTC) for point in points]
    figure = new_figure(10, 3.2)
    left, right = figure.subplots(1, 2)
    left.plot(when, [point.mmd2 for point in points], marker="o", color="#4c72b0")
    left.set_title("MMD² per slice (reference vs captured)")
    right.plot(when, [point.auc for point in points], marker="o", color="#dd8452")
    right.axhline(0.5, color="#888888", linewidth=0.8, linestyle=":")
    right.set_title("domain classifier held-out AUC per slice")
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=30, labelsize=7)
        axis.set_xlabel(f"slice end (UTC), {points[0].rows}+ rows each")
    return figure_data_uri(figure, dpi=90, tight=True)


def _plots(outcome: CheckOutcome) -> list[tuple[str, str]]:
    from ingot.monitor.statistics import rebin
    from ingot.reports import figure_data_uri, new_figure

    baseline, window = outcome.baseline, outcome.window
    if not baseline or window.rows == 0:
        return []
    plots = []
    if outcome.embeddings is not None:
        plots.append(("Embeddings (PCA of the pooled samples)", _embedding_plot(outcome.embeddings)))
        history = _history_plot(outcome.embeddings)
        if history is not None:
            plots.append(("Embedding statistics over time", history))

    def side_by_side() -> tuple[Any, Any]:
        figure = new_figure(10, 3.2)
        return figure, figure.subplots(1, 2, sharey=True)

    names = list(baseline.class_names) or [str(i) for i in range(len(window.class_counts))]
    figure, axes = side_by_side()
    for axis, counts, title in ((axes[0], baseline.predicted_class_counts, "baseline (validation)"),
                                (axes[1], window.class_counts, "live window")):
        axis.bar(range(len(names)), _fractions(counts), color="#4c72b0" if axis is axes[0] else "#dd8452")
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        axis.set_title(title)
    axes[0].set_ylabel("fraction of predictions")
    plots.append(("Predicted-class prior", figure_data_uri(figure, dpi=90, tight=True)))

    def histograms(title: str, reference: Any, live: Any, edges: Any, xlabel: str) -> None:
        figure, axes = side_by_side()
        for axis, counts, label, colour in ((axes[0], reference, "baseline (validation)", "#4c72b0"),
                                            (axes[1], live, "live window", "#dd8452")):
            axis.stairs(_fractions(counts), edges, fill=True, color=colour)
            axis.set_title(label)
            axis.set_xlabel(xlabel)
        axes[0].set_ylabel("fraction")
        plots.append((title, figure_data_uri(figure, dpi=90, tight=True)))

    confidence = baseline.confidence
    histograms("Top-1 confidence", confidence.counts, rebin(window.confidence_counts, confidence.bins),
               confidence.edges, "confidence")
    for reference, live, label in ((baseline.input_mean, window.input_mean_counts, "per-image pixel mean (0..255)"),
                                   (baseline.input_std, window.input_std_counts, "per-image pixel standard deviation")):
        if reference and live:
            histograms(label.capitalize(), reference.counts, live, reference.edges, label)
    return plots


def render_html(outcome: CheckOutcome) -> str:
    result = outcome.result
    escape = html.escape
    rows = "".join(
        f"<tr class='{escape(t.verdict.replace(' ', '-').strip('()').replace('(', ''))}'><td>{escape(t.name)}</td><td>{escape(t.kind)}</td>"
        f"<td>{_number(t.statistic)}</td><td>{_number(t.value)}</td><td>{_number(t.threshold)}</td>"
        f"<td>{escape(t.verdict)}</td><td>{'advisory' if t.advisory else 'decides' if t.kind == 'p-value' else 'advisory'}</td>"
        f"<td>{escape(t.detail)}</td></tr>"
        for t in result.tests
    )
    figures = "".join(f"<h2>{escape(title)}</h2><img alt='{escape(title)}' src='{uri}'>" for title, uri in _plots(outcome))
    accuracy = []
    if result.estimated_accuracy is not None:
        accuracy.append(f"Estimated accuracy (label-free, calibrated confidence): <b>{_number(result.estimated_accuracy)}</b>")
    if result.validation_accuracy is not None:
        accuracy.append(f"Validation accuracy: {_number(result.validation_accuracy)}")
    if result.labelled_accuracy is not None:
        low, high = result.labelled_interval or (None, None)
        accuracy.append(f"Labelled accuracy: <b>{_number(result.labelled_accuracy)}</b> "
                        f"(95% CI {_number(low)}..{_number(high)}, {outcome.window.labelled} labels)")
    notes = "".join(f"<li>{escape(note)}</li>" for note in result.notes)
    text = escape(format_text(outcome))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift check: {escape(outcome.model)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
tr.drift td, tr.large td {{ background: #fde2e1; }} tr.drift-advisory td {{ background: #fff3d6; }} .status {{ font-size: 1.4em; }}
img {{ max-width: 100%; }} pre {{ background: #f6f6f6; padding: 1em; }}
</style></head><body>
<h1>Drift check: {escape(outcome.model)} (champion version {outcome.champion_version})</h1>
<p class="status">Verdict: <b>{escape(result.status)}</b> over {outcome.window.rows} predictions</p>
<p>{'<br>'.join(accuracy)}</p>
<h2>Tests</h2>
<table><tr><th>test</th><th>kind</th><th>statistic</th><th>p-value / distance</th><th>threshold</th>
<th>verdict</th><th>role</th><th>detail</th></tr>{rows}</table>
<p>{escape(_family_note(result))}.</p>
<ul>{notes}</ul>
{figures}
<h2>Summary</h2><pre>{text}</pre>
</body></html>
"""


def write_report(outcome: CheckOutcome, path: str | os.PathLike[str]) -> Path:
    """Write the HTML report whole (a reader never sees half of it)."""
    from ingot.storage import atomic_write

    path = Path(path).expanduser()
    atomic_write(path, render_html(outcome))
    return path
