"""`ingot ab analyze`: the rollout's sequential test on counts from elsewhere (a notebook, another
serving stack), so Ingot's decision rule can judge any A/B test of two classifiers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "ab", help="A/B analysis of labelled accuracy (always-valid sequential test)",
        description="Decide between a champion and a challenger from labelled counts with the "
        "mixture sequential probability ratio test used by `ingot rollout`.",
    )
    actions = parser.add_subparsers(dest="ab_command", metavar="ACTION", required=True)
    analyze = actions.add_parser(
        "analyze", help="decide from CORRECT/TOTAL counts of each arm",
        description="Print the decision (promote | rollback | continue | inconclusive), the mSPRT "
        "statistic, the always-valid interval of challenger - champion accuracy and the reasons.",
    )
    analyze.add_argument("--champion", required=True, metavar="CORRECT/TOTAL", help="e.g. 1440/2000")
    analyze.add_argument("--challenger", required=True, metavar="CORRECT/TOTAL", help="e.g. 1340/2000")
    analyze.add_argument("--policy", type=Path, metavar="FILE",
                         help="YAML or JSON policy (alpha, tau, min_labels, margin, ...)")
    for name, kind, text in (("alpha", float, "false-decision rate (default 0.05)"),
                             ("tau", float, "mixture spread (default 0.05)"),
                             ("min-labels", int, "labelled rows needed per arm (default 200)"),
                             ("margin", float, "non-inferiority margin for promotion (default 0.01)")):
        analyze.add_argument(f"--{name}", type=kind, default=None, help=text)
    analyze.add_argument("--json", action="store_true", help="print the verdict as JSON")
    analyze.set_defaults(handler=run_analyze)


def load_policy(path: Path | None, **overrides: object):  # type: ignore[no-untyped-def]
    """A Policy from a YAML/JSON file plus command-line overrides (None means not given)."""
    from ingot.errors import ConfigError
    from ingot.rollout.analysis import Policy

    data: dict[str, object] = {}
    if path is not None:
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as err:
            raise ConfigError(f"cannot read policy file {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"policy file {path} is not valid YAML/JSON: {str(err).splitlines()[0]}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"policy file {path} must be a mapping of policy keys, got {type(loaded).__name__}")
        data.update(loaded or {})
    data.update({key: value for key, value in overrides.items() if value is not None})
    return Policy.from_dict(data)


def run_analyze(args: argparse.Namespace) -> int:
    from ingot.rollout.analysis import ArmCounts, analyze

    policy = load_policy(args.policy, alpha=args.alpha, tau=args.tau, min_labels=args.min_labels,
                         margin=args.margin)
    champion, challenger = ArmCounts.parse(args.champion), ArmCounts.parse(args.challenger)
    verdict = analyze(champion, challenger, policy)
    if args.json:
        print(json.dumps({
            **verdict.to_dict(),
            "champion": {"correct": champion.correct, "total": champion.total, "accuracy": champion.accuracy},
            "challenger": {"correct": challenger.correct, "total": challenger.total,
                           "accuracy": challenger.accuracy},
            "policy": policy.to_dict(),
        }, indent=2))
        return 0
    print(f"decision:    {verdict.decision}")
    print(f"champion:    {champion.correct}/{champion.total} = {_pct(champion.accuracy)}")
    print(f"challenger:  {challenger.correct}/{challenger.total} = {_pct(challenger.accuracy)}")
    if verdict.interval is not None:
        low, high = verdict.interval
        print(f"difference:  {verdict.difference:+.4f}  always-valid {1 - policy.alpha:.0%} interval "
              f"[{low:+.4f}, {high:+.4f}]")
        print(f"mSPRT:       statistic {verdict.likelihood_ratio:.4g} (decides at {1 / policy.alpha:.4g}), "
              f"p = {verdict.p_value:.4g}")
    for reason in verdict.reasons:
        print(f"reason:      {reason}")
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"
