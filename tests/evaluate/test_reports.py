"""The evaluation report's figures, drawn by matplotlib: the confusion matrix is a C x C heatmap
with every cell annotated, the per-class chart has precision, recall and F1 bars per class."""

from __future__ import annotations

import numpy as np

CLASSES = ["cat", "dog", "fox"]
MATRIX = [[5, 1, 0], [2, 7, 1], [0, 0, 9]]
PER_CLASS = {"cat": {"precision": 0.71, "recall": 0.83, "f1": 0.77},
             "dog": {"precision": 0.88, "recall": 0.70, "f1": 0.78},
             "fox": {"precision": 0.90, "recall": 1.00, "f1": 0.95}}


def test_confusion_matrix_heatmap_has_c_by_c_annotated_cells():
    from ingot.reports import confusion_matrix_figure

    figure = confusion_matrix_figure(MATRIX, CLASSES)
    ax = figure.axes[0]
    (image,) = ax.images
    np.testing.assert_array_equal(image.get_array(), np.asarray(MATRIX))
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(c for row in MATRIX for c in row)
    assert len(figure.axes) == 2  # the heatmap and its colour bar


def test_per_class_bars_show_three_metrics_per_class_and_the_floor():
    from ingot.reports import per_class_figure

    ax = per_class_figure(PER_CLASS, CLASSES, f1_floor=0.8).axes[0]
    heights = [round(p.get_height(), 2) for p in ax.patches]
    assert len(heights) == 3 * len(CLASSES)
    assert heights[:3] == [0.71, 0.88, 0.90]  # precision of each class, then recall, then F1
    assert heights[-3:] == [0.77, 0.78, 0.95]
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    floor = [line for line in ax.get_lines() if line.get_label().startswith("F1 floor")]
    assert len(floor) == 1 and list(floor[0].get_ydata()) == [0.8, 0.8]


def test_plots_embed_as_png():
    from ingot.reports import confusion_matrix_figure, plot_html

    html = plot_html(confusion_matrix_figure(MATRIX, CLASSES), name="confusion-matrix", caption="matrix")
    assert html.startswith('<figure class="plot" id="plot-confusion-matrix"><img src="data:image/png;base64,')
