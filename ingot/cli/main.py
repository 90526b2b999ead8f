"""Entry point of the `ingot` console script.

Each command group lives in its own module with a `register(subparsers)` function that adds its
parser and sets `handler`; heavy imports happen inside handlers, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ingot import __version__
from ingot.errors import IngotError

# Command modules, in the order `ingot --help` lists them.
COMMAND_MODULES = (
    "ingot.cli.train",
    "ingot.cli.pipeline",
    "ingot.cli.models",
    "ingot.cli.data",
    "ingot.cli.serve",
    "ingot.cli.predict",
    "ingot.cli.gateway",
    "ingot.cli.cascade",
    "ingot.cli.feedback",
    "ingot.cli.rollout",
    "ingot.cli.ab",
    "ingot.cli.monitor",
    "ingot.cli.loop",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingot",
        description="Retrain and serve TensorFlow/Keras image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"ingot {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except IngotError as err:
        print(f"ingot: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ingot: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
