"""The HTML reports the retraining steps write (the Kubeflow UI renders HTML artifacts): the data
report, the training curves and the evaluation report, each one self-contained page with its
plots drawn by matplotlib and embedded as PNG data URIs.

matplotlib is used through `matplotlib.figure.Figure` directly (no pyplot), so no global backend
or figure registry is touched and reports can be drawn from any thread or step.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import numpy as np

SAMPLE_GRID = 3  # the data report shows a SAMPLE_GRID x SAMPLE_GRID grid of training images
THUMBNAIL_PX = 96  # displayed size of each sample (pixels are shown at the model's input size)
PLOT_DPI = 100
SPLIT_COLOURS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#2ca02c"}

_STYLE = """body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 0 1em 1em 0; } figure.plot { display: inline-block; vertical-align: top; }
img.sample { image-rendering: pixelated; border: 1px solid #999; }
tr.best { font-weight: bold; }"""


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=PLOT_DPI, layout="constrained")


def new_figure(width: float, height: float) -> Any:
    """A pyplot-free matplotlib figure, safe to draw from any thread (every report uses this)."""
    return _figure(width, height)


def figure_png(figure: Any, *, dpi: int = PLOT_DPI, tight: bool = False) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_data_uri(figure: Any, *, dpi: int = PLOT_DPI, tight: bool = False) -> str:
    """A figure as an embeddable `data:image/png;base64,...` URI (the one helper every HTML report uses)."""
    return data_uri(figure_png(figure, dpi=dpi, tight=tight))


def plot_html(figure: Any, *, name: str, caption: str) -> str:
    """A figure as an embedded PNG with a caption; `name` identifies the plot (its CSS id)."""
    return (f'<figure class="plot" id="plot-{escape(name)}"><img src="{data_uri(figure_png(figure))}" '
            f'alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>')


def training_curves_figure(history: Mapping[str, Sequence[float]], *, best_epoch: int | None = None) -> Any:
    """Loss and accuracy per epoch, training and validation, with the restored best epoch marked."""
    panels = [(title, [k for k in keys if history.get(k)]) for title, keys in
              (("loss", ("loss", "val_loss")), ("accuracy", ("accuracy", "val_accuracy")))]
    panels = [(title, keys) for title, keys in panels if keys]
    figure = _figure(4.2 * max(len(panels), 1), 3.2)
    axes = figure.subplots(1, max(len(panels), 1), squeeze=False)[0]
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            values = [float(v) for v in history[key]]
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3,
                    label="validation" if key.startswith("val_") else "training")
        if best_epoch:
            ax.axvline(best_epoch, color="#2ca02c", linestyle="--", label=f"best epoch {best_epoch} (restored)")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return figure


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> Any:
    """A C x C heatmap, rows true classes and columns predicted ones, each cell annotated."""
    values = np.asarray(matrix, dtype=np.int64)
    size = max(3.5, 0.45 * len(class_names) + 2.0)
    figure = _figure(size + 0.8, size)
    ax = figure.add_subplot()
    image = ax.imshow(values, cmap="Blues", interpolation="nearest")
    figure.colorbar(image, ax=ax, label="images")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(class_names))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix (test split)")
    threshold = values.max() / 2 if values.size else 0
    if len(class_names) <= 30:
        for (row, col), count in np.ndenumerate(values):
            ax.text(col, row, str(count), ha="center", va="center", fontsize="small",
                    color="white" if count > threshold else "black")
    return figure


def per_class_figure(per_class: Mapping[str, Mapping[str, float]], class_names: Sequence[str],
                     *, f1_floor: float | None = None) -> Any:
    """Precision, recall and F1 per class as grouped bars, with the gate's F1 floor as a line."""
    figure = _figure(max(4.5, 0.6 * len(class_names) + 2.0), 3.2)
    ax = figure.add_subplot()
    x = np.arange(len(class_names))
    width = 0.27
    for offset, metric in zip((-width, 0.0, width), ("precision", "recall", "f1")):
        ax.bar(x + offset, [float(per_class[name][metric]) for name in class_names], width, label=metric)
    if f1_floor is not None:
        ax.axhline(f1_floor, color="#d62728", linestyle="--", label=f"F1 floor {f1_floor:.2f}")
    ax.set_xticks(x, labels=list(class_names), rotation=45 if len(class_names) > 6 else 0)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title("per-class precision, recall, F1 (test split)")
    ax.legend(fontsize="small", ncols=4, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return figure


def class_counts_figure(counts: Mapping[str, Mapping[str, int]], class_names: Sequence[str]) -> Any:
    """Images per class, stacked by split (train, validation, test)."""
    figure = _figure(max(4.5, 0.5 * len(class_names) + 2.0), 3.2)
    ax = figure.add_subplot()
    bottom = np.zeros(len(class_names))
    for split, per_class in counts.items():
        heights = np.asarray([per_class.get(name, 0) for name in class_names], dtype=float)
        ax.bar(range(len(class_names)), heights, bottom=bottom, label=split, color=SPLIT_COLOURS.get(split))
        bottom += heights
    ax.set_xticks(range(len(class_names)), labels=list(class_names), rotation=45 if len(class_names) > 6 else 0)
    ax.set_ylabel("images")
    ax.set_title("images per class")
    ax.legend(fontsize="small")
    return figure


def intensity_histograms_figure(histograms: Mapping[str, np.ndarray]) -> Any:
    """One panel per class: the share of pixel values (all channels) at each level 0..255, the
    exposure check that shows a class shot darker or brighter than the others."""
    names = list(histograms)
    columns = min(5, max(len(names), 1))
    rows = -(-len(names) // columns) if names else 1
    figure = _figure(2.3 * columns, 1.9 * rows)
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    levels = np.arange(256)
    for index, ax in enumerate(axes.flat):
        if index >= len(names):
            ax.set_visible(False)
            continue
        counts = np.asarray(histograms[names[index]], dtype=float)
        share = counts / counts.sum() if counts.sum() else counts
        ax.fill_between(levels, share, step="mid", alpha=0.7)
        ax.set_title(names[index], fontsize="small")
        ax.set_xlim(0, 255)
        ax.set_xticks([0, 128, 255])
    figure.supxlabel("pixel value")
    figure.supylabel("share of pixels")
    return figure


# ---------------------------------------------------------------------------------------------
# Data report
# ---------------------------------------------------------------------------------------------


def scan_training_images(split: Any, image_size: Any, *, samples: int = SAMPLE_GRID * SAMPLE_GRID
                         ) -> tuple[list[tuple[str, np.ndarray]], dict[str, np.ndarray]]:
    """One pass over a Dataset artifact split, decoded exactly as training decodes: up to
    `samples` (class name, uint8 [H,W,3]) images, one class after another so the grid shows every
    class before repeating one, and each class's pixel-intensity histogram (256 levels)."""
    from ingot.data.records import decoded_records

    names = list(split.class_names)
    kept: list[list[np.ndarray]] = [[] for _ in names]
    histograms = {name: np.zeros(256, dtype=np.int64) for name in names}
    for pixels, labels in decoded_records(split, image_size).batch(256).as_numpy_iterator():
        for image, label in zip(pixels, labels):
            histograms[names[int(label)]] += np.bincount(image.reshape(-1), minlength=256)
            if len(kept[int(label)]) < samples:
                kept[int(label)].append(image)
    chosen: list[tuple[str, np.ndarray]] = []
    while len(chosen) < samples and any(kept):
        for label, queue in enumerate(kept):
            if queue and len(chosen) < samples:
                chosen.append((names[label], queue.pop(0)))
    return chosen, histograms


def png_data_uri(pixels: Any) -> str:
    import tensorflow as tf

    return data_uri(tf.io.encode_png(pixels).numpy())


def data_report_html(report: Any, splits: Any, image_size: Any) -> str:
    """The data report: class counts (plot and table per split), image sizes, skipped files, a
    3x3 grid of training samples and per-class pixel-intensity histograms."""
    samples, histograms = scan_training_images(splits.train, image_size)
    counts = {name: part.class_counts() for name, part in splits.items()}
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{report.class_counts.get(name, 0)}</td>"
        + "".join(f"<td>{counts[split][name]}</td>" for split in ("train", "validation", "test"))
        + "</tr>"
        for name in splits.class_names
    )
    cells = "".join(
        f'<figure><img class="sample" src="{png_data_uri(pixels)}" alt="{escape(name)}" width="{THUMBNAIL_PX}" '
        f'height="{THUMBNAIL_PX}"><figcaption>{escape(name)}</figcaption></figure>'
        for name, pixels in samples
    )
    plots = (plot_html(class_counts_figure(counts, splits.class_names), name="class-counts",
                       caption="images per class and split")
             + plot_html(intensity_histograms_figure(histograms), name="intensity-histograms",
                         caption="pixel-intensity histogram per class (training split, as the model sees it)"))
    skipped = "".join(f"<li><code>{escape(s.path)}</code>: {escape(s.reason)}</li>" for s in report.skipped)
    ratio = "n/a" if report.imbalance_ratio is None else f"{report.imbalance_ratio:.2f}"
    height, width = report.height, report.width
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Data report</title>
<style>
{_STYLE}
.grid {{ display: inline-grid; grid-template-columns: repeat({SAMPLE_GRID}, {THUMBNAIL_PX + 16}px); gap: 4px;
  vertical-align: top; margin-right: 1em; }}
.grid figure {{ text-align: center; margin: 0; }}
</style></head><body>
<h2>Data report: <code>{escape(report.source)}</code></h2>
<p>{report.total} images in {len(report.class_counts)} classes ({escape(report.kind)}); imbalance ratio
(largest/smallest class) {ratio}; {len(report.skipped)} undecodable file(s) skipped; {report.ignored_files}
non-image file(s) ignored. Data hash <code>{escape(splits.content_hash)}</code>.</p>
<table><tr><th>class</th><th>images</th><th>train</th><th>validation</th><th>test</th></tr>{rows}</table>
<p>Image size: height {height.min}&ndash;{height.max} (mean {height.mean:.1f}), width {width.min}&ndash;{width.max}
(mean {width.mean:.1f}) pixels; the model sees {int(image_size[0])}x{int(image_size[1])}.</p>
<h3>Training samples, as the model sees them, beside each class's pixel intensities</h3>
<div class="grid">{cells}</div>{plots}
{f"<h3>Skipped files</h3><ul>{skipped}</ul>" if skipped else ""}
</body></html>
"""


# ---------------------------------------------------------------------------------------------
# Training curves
# ---------------------------------------------------------------------------------------------


def training_curves_html(history: Mapping[str, Sequence[float]], *, best_epoch: int | None = None) -> str:
    """Loss and accuracy per epoch (plot with the restored best epoch marked) and the table."""
    epochs = max((len(v) for v in history.values()), default=0)
    plot = ""
    if any(history.get(k) for k in ("loss", "val_loss", "accuracy", "val_accuracy")):
        plot = plot_html(training_curves_figure(history, best_epoch=best_epoch), name="training-curves",
                         caption="loss and accuracy per epoch" + (f"; best epoch {best_epoch} restored" if best_epoch else ""))
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if history.get(k)]
    header = "".join(f"<th>{escape(k)}</th>" for k in keys)
    rows = "".join(
        ("<tr class=\"best\">" if best_epoch == epoch + 1 else "<tr>") + f"<td>{epoch + 1}</td>"
        + "".join(f"<td>{history[k][epoch]:.4f}</td>" if epoch < len(history[k]) else "<td></td>" for k in keys)
        + "</tr>"
        for epoch in range(epochs)
    )
    best = f"; best epoch {best_epoch} (dashed line, bold row) restored" if best_epoch else ""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Training curves</title><style>{_STYLE}</style></head><body>
<h2>Training curves</h2><p>{epochs} epoch(s){best}.</p>
{plot}
<table><tr><th>epoch</th>{header}</tr>{rows}</table>
</body></html>
"""


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def _failed_classes(decision: Mapping[str, Any]) -> set[str]:
    return {c["name"].split(":", 1)[1] for c in decision.get("checks", [])
            if c["name"].startswith("class_f1:") and not c["passed"]}


def evaluation_html(record: Any) -> str:
    """The evaluation report of one EvaluationRecord: verdict, champion comparison, the
    confusion-matrix heatmap (and its C x C table), per-class bars and table, the reasons."""
    metrics, decision = record.metrics, record.gate
    names = list(metrics["class_names"])
    floor = decision.get("thresholds", {}).get("min_class_f1")
    failed = _failed_classes(decision)
    champion = record.champion_metrics
    comparison = (f"Champion: accuracy {float(champion['accuracy']):.4f}, macro F1 {float(champion['macro_f1']):.4f}."
                  if champion else "No champion yet: nothing to compare against.")
    matrix = metrics["confusion_matrix"]
    matrix_rows = "".join(
        f"<tr><th>{escape(name)}</th>" + "".join(f"<td>{int(c)}</td>" for c in row) + "</tr>"
        for name, row in zip(names, matrix)
    )
    class_rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{metrics['per_class'][name]['precision']:.3f}</td>"
        f"<td>{metrics['per_class'][name]['recall']:.3f}</td><td>{metrics['per_class'][name]['f1']:.3f}</td>"
        f"<td>{int(metrics['per_class'][name]['support'])}</td>"
        f"<td>{'n/a' if floor is None else ('below' if name in failed else 'ok')}</td></tr>"
        for name in names
    )
    reasons = "".join(f"<li>{escape(reason)}</li>" for reason in decision.get("reasons", []))
    # The paired comparisons against the champion, re-scored on these rows, each with its interval.
    paired = "".join(
        f"<tr><td>{escape(str(metric))}</td><td>{float(c['candidate']):.4f}</td><td>{float(c['champion']):.4f}</td>"
        f"<td>{float(c['difference']):+.4f}</td><td>[{float(c['interval'][0]):+.4f}, {float(c['interval'][1]):+.4f}]</td>"
        f"<td>{int(c['n'])}</td><td>{'regressed' if c['regressed'] else 'ok'}</td></tr>"
        for metric, c in (decision.get("comparisons") or {}).items()
    )
    paired_html = ("<h3>Against the champion (same test rows)</h3><table class=\"paired\"><tr><th>metric</th>"
                   "<th>candidate</th><th>champion</th><th>difference</th><th>interval</th><th>rows</th>"
                   f"<th>verdict</th></tr>{paired}</table>") if paired else ""
    verdict = "BLESSED" if decision.get("blessed") else "REJECTED"
    plots = (plot_html(confusion_matrix_figure(matrix, names), name="confusion-matrix",
                       caption="confusion matrix: rows true class, columns predicted class")
             + plot_html(per_class_figure(metrics["per_class"], names, f1_floor=floor), name="per-class",
                         caption="per-class precision, recall and F1"))
    extra = "".join(f"<h3>{escape(str(title))}</h3><pre>{escape(str(body))}</pre>"
                    for title, body in (record.extra_sections or {}).items())
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Evaluation: {escape(record.model_name)}</title><style>{_STYLE}</style></head><body>
<h2>{escape(record.model_name)}: {verdict}</h2>
<p>Held-out test split: {int(metrics['num_examples'])} images. Accuracy <b>{metrics['accuracy']:.4f}</b>,
macro F1 <b>{metrics['macro_f1']:.4f}</b>, ECE {metrics['ece']:.4f}. {comparison}</p>
{plots}
<h3>Confusion matrix</h3>
<table class="confusion"><tr><th>true \\ predicted</th>{"".join(f"<th>{escape(n)}</th>" for n in names)}</tr>{matrix_rows}</table>
<h3>Per class</h3>
<table class="per-class"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>
<th>F1 floor {'' if floor is None else f'{floor:.2f}'}</th></tr>{class_rows}</table>
{paired_html}
{f"<h3>Reasons</h3><ul>{reasons}</ul>" if reasons else f"<p>All {len(decision.get('checks', []))} gate checks passed.</p>"}
{extra}
</body></html>
"""


def per_class_markdown(record: Any) -> str:
    """The per-class table and the gate's verdict as Markdown (for logs and the CLI)."""
    metrics, decision = record.metrics, record.gate
    floor = decision.get("thresholds", {}).get("min_class_f1")
    failed = _failed_classes(decision)
    lines = [
        f"## {record.model_name}: {'BLESSED' if decision.get('blessed') else 'REJECTED'}",
        "",
        f"Held-out test split: {int(metrics['num_examples'])} images. Accuracy **{metrics['accuracy']:.4f}**, "
        f"macro F1 **{metrics['macro_f1']:.4f}**, ECE {metrics['ece']:.4f}.",
        "",
    ]
    champion = record.champion_metrics
    if champion:
        lines += [f"Champion: accuracy {float(champion['accuracy']):.4f}, macro F1 "
                  f"{float(champion['macro_f1']):.4f}.", ""]
    else:
        lines += ["No champion yet: nothing to compare against.", ""]
    lines += [
        f"| class | precision | recall | F1 | support | F1 floor {'' if floor is None else f'{floor:.2f}'} |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for name in metrics["class_names"]:
        row = metrics["per_class"][name]
        verdict = "n/a" if floor is None else ("**below**" if name in failed else "ok")
        lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | "
                     f"{int(row['support'])} | {verdict} |")
    lines += [""]
    if decision.get("reasons"):
        lines += ["Reasons:", ""] + [f"- {reason}" for reason in decision["reasons"]]
    else:
        lines += [f"All {len(decision.get('checks', []))} gate checks passed."]
    return "\n".join(lines) + "\n"
