"""`ingot cascade calibrate MODEL`: the threshold of a confidence cascade (the gateway's
`cascade` per arm, docs/gateway.md) from the validation split, with the coverage/accuracy curve."""

from __future__ import annotations

import argparse
import json

from ingot.settings import MODEL_REPOSITORY_ENV


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "cascade", help="confidence cascades: choose a small model's threshold",
        description="A cascade lets a small model answer when its top-1 probability reaches a threshold "
        "and the full model answer the rest (the routing table's `cascade` per arm).",
    )
    actions = parser.add_subparsers(dest="cascade_command", metavar="ACTION", required=True)
    calibrate = actions.add_parser(
        "calibrate", help="pick the threshold for a stated accuracy loss and print the curve",
        description="Score the small and the full model on the dataset's validation split, print the "
        "coverage/accuracy curve and the lowest threshold whose accuracy is at most --max-loss points "
        "below the full model alone.",
    )
    calibrate.add_argument("model", metavar="MODEL", help="the model name in the model repository")
    calibrate.add_argument("--small", required=True, metavar="VERSION|PATH",
                           help="the small model: a version of MODEL or a SavedModel directory")
    calibrate.add_argument("--full", required=True, metavar="VERSION|PATH",
                           help="the full model: a version of MODEL or a SavedModel directory")
    calibrate.add_argument("--dataset", required=True, metavar="DIR",
                           help="the Dataset artifact whose validation split is scored")
    calibrate.add_argument("--model-repository", default=None, metavar="BASE",
                           help=f"where versions are looked up (default ${MODEL_REPOSITORY_ENV}, else "
                           "./model-repository)")
    calibrate.add_argument("--max-loss", type=float, default=0.5, metavar="POINTS",
                           help="accuracy loss allowed against the full model alone, in percentage points "
                           "(default 0.5)")
    calibrate.add_argument("--json", action="store_true", help="print the whole curve and the choice as JSON")
    calibrate.add_argument("--plot", default=None, metavar="FILE.png", help="also write the curve as a PNG")
    calibrate.set_defaults(handler=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from ingot.evaluate.cascade import calibrate_models

    result = calibrate_models(args.model, args.small, args.full, args.dataset, repository=args.model_repository,
                              max_loss_points=args.max_loss)
    if args.plot:
        from ingot.evaluate.cascade import curve_figure
        from ingot.reports import figure_png
        from ingot.storage import atomic_write

        atomic_write(args.plot, figure_png(curve_figure(result), tight=True))
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
        return 0 if result.chosen is not None else 1
    print(format_calibration(result))
    return 0 if result.chosen is not None else 1


def format_calibration(result: object) -> str:
    from ingot.evaluate.cascade import Calibration

    assert isinstance(result, Calibration)
    lines = [f"{result.rows} validation rows: full model {result.full_accuracy:.2%}, small model "
             f"{result.small_accuracy:.2%}; allowed loss {result.max_loss_points:g} points",
             f"  {'threshold':>10}{'coverage':>10}{'accuracy':>10}{'loss pts':>10}{'small acc':>11}"]
    for p in result.table():
        mark = "  <- chosen" if result.chosen is not None and p.threshold == result.chosen.threshold else ""
        small = f"{p.small_accuracy_answered:.2%}" if p.small_accuracy_answered is not None else "n/a"
        lines.append(f"  {p.threshold:>10.4f}{p.coverage:>10.2%}{p.accuracy:>10.2%}{p.loss_points:>10.2f}"
                     f"{small:>11}{mark}")
    if result.chosen is None:
        lines.append(f"no threshold keeps the loss within {result.max_loss_points:g} points: do not cascade")
    else:
        lines.append(f"threshold {result.chosen.threshold!r}: the small model answers {result.chosen.coverage:.1%} "
                     f"of rows, accuracy {result.chosen.accuracy:.2%} (loss {result.chosen.loss_points:.2f} points vs "
                     f"the full model alone); routing table: cascade: {{small: {{...}}, threshold: {result.chosen.threshold!r}}}")
    return "\n".join(lines)
