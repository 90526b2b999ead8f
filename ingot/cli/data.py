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

    build = actions.add_parser(
        "build", help="labelled production inputs + a base dataset -> a new dataset version",
        description="Join MODEL's feedback labels (the inference log) with the inputs the gateway captured "
        "(--capture-url) for a time window, resolve repeated labels by majority (ties dropped and counted), "
        "keep the newest share as a production holdout that is never trained on, merge the rest with the "
        "base Dataset artifact, and write a new Dataset artifact with its provenance in the manifest. The "
        "dataset version is recorded in the registry (docs/capture.md).",
    )
    build.add_argument("model", metavar="MODEL")
    build.add_argument("--base", required=True, help="the base Dataset artifact (the model's training data)")
    build.add_argument("--output", required=True, help="directory (or gs:// URL) for the new Dataset artifact")
    build.add_argument("--since", default=None, help="window start: ISO 8601 time or an age such as 7d, 12h (default: all)")
    build.add_argument("--until", default=None, help="window end: ISO 8601 time (default: now)")
    build.add_argument("--holdout-fraction", type=float, default=0.2,
                       help="newest share of production rows kept out of training as the production holdout (0.2)")
    build.add_argument("--production-weight", type=int, default=1,
                       help="times each production training row appears in train (default 1)")
    build.add_argument("--min-per-class", type=int, default=0,
                       help="refuse the build when a class has fewer production training rows (default 0)")
    build.add_argument("--max-rows", type=int, default=None,
                       help="only the newest N labelled inputs (a rolling window by count; default: all)")
    build.add_argument("--log-url", default=None, help="inference log URL (default $INGOT_LOG_URL, else the registry's)")
    build.add_argument("--capture-url", default=None, help="capture store (default $INGOT_CAPTURE_URL, else ./.ingot/capture)")
    build.add_argument("--registry", default=None, help="registry URL to record the dataset version in "
                       "(default $INGOT_REGISTRY_URL, else SQLite under the data directory)")
    build.add_argument("--no-register", dest="register", action="store_false", help="do not record it in the registry")
    build.add_argument("--json", action="store_true", help="print the summary as JSON")
    build.set_defaults(handler=run_build)


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


def parse_time(value: str | None, flag: str) -> Any:
    """An aware UTC datetime from ISO 8601 or an age ('7d', '12h', '30m' before now); None for None."""
    import re
    from datetime import UTC, datetime, timedelta

    if value is None:
        return None
    age = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([dhm])", value.strip())
    if age:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[age[2]]
        return datetime.now(UTC) - timedelta(**{unit: float(age[1])})
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise DataError(f"{flag} {value!r} is not an ISO 8601 time or an age such as 7d") from None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp


def run_build(args: argparse.Namespace) -> int:
    from ingot import settings
    from ingot.capture.dataset import BuildPolicy, build_dataset
    from ingot.inference_log.store import InferenceLogStore

    policy = BuildPolicy(holdout_fraction=args.holdout_fraction, production_weight=args.production_weight,
                         min_per_class=args.min_per_class, max_rows=args.max_rows)
    since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    store = InferenceLogStore.from_url(args.log_url)
    try:
        result = build_dataset(model=args.model, base=args.base, output=args.output, log_engine=store.engine,
                               capture_url=settings.capture_url(args.capture_url), since=since, until=until,
                               policy=policy)
    finally:
        store.close()
    summary: dict[str, Any] = {"output": result.directory, "content_hash": result.content_hash,
                               "counts": result.counts, "sources": result.sources}
    if args.register:
        from ingot.registry import Registry
        from ingot.registry.datasets import record_dataset_version

        production = result.sources["production"]
        with Registry.from_url(args.registry) as registry:
            version = record_dataset_version(
                registry, model=args.model, content_hash=result.content_hash, uri=result.directory,
                parent_hash=result.sources["base"]["content_hash"], window_start=since,
                window_end=parse_time(production["window"]["until"], "--until"), counts=result.counts,
                sources=result.sources)
        summary["dataset_version"] = version.id
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        production = result.sources["production"]
        coverage = production["label_coverage"]
        print(f"Dataset version {summary.get('dataset_version', '(not recorded)')}  {result.directory}  "
              f"content hash {result.content_hash[:16]}")
        print(f"Production  {production['labelled_inputs']} labelled inputs, {production['captured_inputs']} captured "
              f"(coverage {'n/a' if coverage is None else f'{coverage:.1%}'}), "
              f"{production['conflicts_dropped']} conflicts dropped; {production['train_rows']} to train "
              f"(x{args.production_weight}), {production['holdout_rows']} production holdout")
        print("Splits      " + ", ".join(f"{name} {count}" for name, count in result.counts.items()))
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
