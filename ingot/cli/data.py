"""`ingot data report PATH`: load a dataset the way training will and print its data report.

Loading (TensorFlow, numpy) happens inside the handler so `ingot --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ingot.errors import DataError

if TYPE_CHECKING:
    from ingot.data.report import DataReport


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "data", help="inspect datasets",
        description="Inspect a dataset exactly as a training run would load it.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    report = actions.add_parser(
        "report", help="class counts, balance, image sizes, conversions and skipped files",
        description="Decode every image once and report class counts, the imbalance ratio, image "
        "size statistics, files converted to RGB and files skipped as undecodable. PATH is an "
        "image folder (one subfolder per class; local, gs:// or s3://), a CIFAR-10 python archive "
        "or directory, 'bundled:digits' or 'keras:cifar10'. Exits 1 when training would refuse "
        "the dataset (after printing the report when one could be made).",
    )
    report.add_argument("path", metavar="PATH")
    report.add_argument(
        "--min-images-per-class", type=int, default=None, metavar="N",
        help="refuse a class with fewer images (default: the training default, 5)",
    )
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from ingot.data.sources import DEFAULT_MIN_IMAGES_PER_CLASS, load_dataset

    minimum = DEFAULT_MIN_IMAGES_PER_CLASS if args.min_images_per_class is None else args.min_images_per_class
    try:
        _, report = load_dataset(args.path, min_images_per_class=minimum)
    except DataError as err:
        partial = getattr(err, "report", None)
        if partial is not None:
            _print(partial, as_json=args.json)
        raise
    _print(report, as_json=args.json)
    return 0


def _print(report: DataReport, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))


def format_report(report: DataReport) -> str:
    """Plain-text tables for a terminal (the markdown form is for files and model cards)."""
    total = report.total or 1
    lines = [
        f"Dataset   {report.source}  ({report.kind})",
        f"Images    {report.total} in {len(report.class_counts)} classes; imbalance ratio "
        f"{'n/a' if report.imbalance_ratio is None else f'{report.imbalance_ratio:.2f}'} "
        "(largest/smallest class)",
        f"Skipped   {len(report.skipped)} undecodable; ignored {report.ignored_files} non-image file(s)",
        "",
    ]
    lines += _table(
        ["CLASS", "IMAGES", "SHARE"],
        [[name, str(count), f"{100.0 * count / total:.1f}%"] for name, count in report.class_counts.items()],
        right=(1, 2),
    )
    lines.append("")
    lines += _table(
        ["SIZE", "MIN", "MAX", "MEAN"],
        [
            ["height", str(report.height.min), str(report.height.max), f"{report.height.mean:.1f}"],
            ["width", str(report.width.min), str(report.width.max), f"{report.width.mean:.1f}"],
        ],
        right=(1, 2, 3),
    )
    if report.formats:
        lines += ["", "Formats           " + ", ".join(f"{k} {v}" for k, v in report.formats.items())]
    if report.converted_modes:
        lines += ["Converted to RGB  " + ", ".join(f"{k} {v}" for k, v in report.converted_modes.items())]
    if report.skipped:
        lines.append("")
        lines += _table(["SKIPPED FILE", "REASON"], [[s.path, s.reason] for s in report.skipped])
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[Any]) -> str:
        parts = [
            str(cell).rjust(widths[i]) if i in right else str(cell).ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    return [line(header)] + [line(row) for row in rows]
