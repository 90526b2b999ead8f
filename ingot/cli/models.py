"""`ingot models list|show`: read the model registry as tables or JSON.

Imports of the registry (SQLAlchemy) happen inside the handlers so `ingot --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ingot.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from ingot.registry import ModelVersion, Registry, StageEvent

from ingot.settings import REGISTRY_URL_ENV

NOTE_WIDTH = 60


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--registry", metavar="URL", default=None,
        help=f"registry database URL (sqlite:///PATH or postgresql://...); default: ${REGISTRY_URL_ENV}, "
        "else the SQLite file in the data directory ($INGOT_DATA_DIR/registry.db)",
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    parser = subparsers.add_parser(
        "models", help="list and inspect registered model versions",
        description="Read the model registry: versions, stages, metrics, lineage and stage history.",
    )
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    list_parser = actions.add_parser(
        "list", parents=[common], help="table of model versions and rejections",
        description="One row per version (newest first) and per gate rejection, with its reasons.",
    )
    list_parser.add_argument("name", nargs="?", metavar="NAME", help="only this model")
    list_parser.add_argument(
        "--limit", type=int, default=20, metavar="N",
        help="newest N records per model (default 20; 0 shows all)",
    )
    list_parser.set_defaults(handler=run_list)

    show_parser = actions.add_parser(
        "show", parents=[common], help="details, lineage, metrics and stage history of a version",
        description="NAME shows the model and its champion (or latest version); NAME:VERSION one "
        "version, where VERSION is a number, 'latest', a stage such as 'champion', or #ID for a "
        "record by id (rejections have no version number; `ingot models list` shows their ids).",
    )
    show_parser.add_argument("spec", metavar="NAME[:VERSION]")
    show_parser.set_defaults(handler=run_show)


def open_registry(url: str | None) -> Registry:
    from ingot.registry import Registry

    return Registry.from_url(url or None)  # None: $INGOT_REGISTRY_URL, else the SQLite default


def run_list(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise ConfigError(f"--limit must be 0 (all) or a positive number, got {args.limit}")
    limit = args.limit or None
    with open_registry(args.registry) as registry:
        summaries = registry.list_models()
        if args.name is not None:
            summaries = [s for s in summaries if s.name == args.name]
            if not summaries:
                registry.champion(args.name)  # raises the readable NotFoundError
        groups = [(s, registry.list_versions(s.name, limit=limit)) for s in summaries]
        if args.json:
            print(json.dumps({
                "registry": registry.url,
                "models": [{**s.to_dict(), "records": [r.to_dict() for r in records]} for s, records in groups],
            }, indent=2))
            return 0
        if not groups:
            print(f"no models registered in {registry.url}")
            return 0
        rows = [_list_row(record) for _, records in groups for record in records]
        print(format_table(["NAME", "VERSION", "STAGE", "STATUS", "ACCURACY", "CREATED", "NOTE"], rows))
        for summary, records in groups:
            hidden = summary.versions + summary.rejections - len(records)
            if hidden > 0:
                print(f"... {hidden} older records of {summary.name} not shown (--limit 0 shows all)")
    return 0


def run_show(args: argparse.Namespace) -> int:
    name, selector = parse_spec(args.spec)
    with open_registry(args.registry) as registry:
        record = _select(registry, name, selector)
        summary = next(s for s in registry.list_models() if s.name == name)
        events = registry.record_events(record.id) if record is not None else []
        rejections = [r for r in registry.list_versions(name) if r.is_rejection] if selector is None else []
        if args.json:
            print(json.dumps({
                "registry": registry.url,
                "model": summary.to_dict(),
                "record": record.to_dict() if record is not None else None,
                "events": [e.to_dict() for e in events],
                **({"rejections": [r.to_dict() for r in rejections]} if selector is None else {}),
            }, indent=2))
            return 0
        lines: list[str] = []
        if selector is None:
            champion = f"champion {name}:{summary.champion}" if summary.champion is not None else "no champion"
            lines.append(
                f"{name}: {summary.versions} published versions, {summary.rejections} rejections, {champion} "
                f"(registered since {_when(summary.created_at)})"
            )
            lines.append("")
        if record is not None:
            lines += describe(record, events)
        else:
            lines.append("no published versions")
        if rejections:
            lines += ["", "Rejections (newest first)"]
            for rejection in rejections:
                run = f", pipeline run {rejection.pipeline_run_id}" if rejection.pipeline_run_id else ""
                when = _when(rejection.created_at)
                lines.append(f"  #{rejection.id}  {when}{run}  accuracy {_number(rejection.accuracy)}")
                lines += [f"      - {reason}" for reason in rejection.reasons]
        print("\n".join(lines))
    return 0


def parse_spec(spec: str) -> tuple[str, int | str | None]:
    """`NAME` -> (NAME, None); `NAME:3` -> (NAME, 3); `NAME:champion` / `NAME:latest` -> strings;
    `NAME:#12` -> (NAME, "#12"), a record by id (how rejections, which have no version, are named)."""
    name, sep, version = spec.partition(":")
    if not name:
        raise ConfigError(f"expected NAME or NAME:VERSION, got {spec!r}")
    if not sep:
        return name, None
    from ingot.registry import Stage

    if version.isdigit() and int(version) > 0:
        return name, int(version)
    if version == "latest" or version in {s.value for s in Stage}:
        return name, version
    if version.startswith("#") and version[1:].isdigit():
        return name, version
    stages = ", ".join(s.value for s in Stage)
    raise ConfigError(
        f"version {version!r} in {spec!r} is not valid; expected a positive integer, 'latest', a stage ({stages}) or #ID"
    )


def _select(registry: Registry, name: str, selector: int | str | None) -> ModelVersion | None:
    if isinstance(selector, int):
        return registry.get_version(name, selector)
    if selector is None:
        return registry.champion(name) or registry.latest(name)
    if selector.startswith("#"):
        record = registry.get_record(int(selector[1:]))
        if record.name != name:
            raise NotFoundError(f"record #{record.id} belongs to {record.name!r}, not {name!r}")
        return record
    found = registry.latest(name) if selector == "latest" else registry.latest(name, stage=selector)
    if found is None:
        raise NotFoundError(f"model {name!r} has no {selector} version")
    return found


def describe(record: ModelVersion, events: list[StageEvent]) -> list[str]:
    """Human-readable detail of one record: artifact, lineage, metrics, gate, stage history."""
    stage = record.stage.value if record.stage else "-"
    lines = [f"{record.label}  stage {stage}  status {record.status.value}"]
    if record.status_reason:
        lines.append(f"  reason        {record.status_reason}")
    lines += [
        f"  artifact      {record.artifact_uri or '- (nothing published)'}",
        f"  model_sha256  {record.model_sha256 or '-'}",
        f"  registered    {_when(record.created_at)} by {record.registered_by}",
        f"  updated       {_when(record.updated_at)}",
        "Lineage",
        f"  pipeline run  {record.pipeline_run_id or '-'}",
        f"  data hash     {record.data_hash or '-'}",
    ]
    if record.config:
        lines.append("  config")
        lines += [f"    {key}: {_compact(value)}" for key, value in sorted(record.config.items())]
    lines.append("Metrics")
    scalars = {k: v for k, v in record.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    lines.append("  " + ("  ".join(f"{k} {_number(v)}" for k, v in sorted(scalars.items())) or "(none recorded)"))
    per_class = record.metrics.get("per_class")
    if isinstance(per_class, dict) and per_class:
        rows = []
        for cls, values in per_class.items():
            values = values if isinstance(values, dict) else {}
            rows.append([str(cls), *(_number(values.get(k)) for k in ("precision", "recall", "f1")),
                         str(values.get("support", "-"))])
        table = format_table(["CLASS", "PRECISION", "RECALL", "F1", "SUPPORT"], rows)
        lines += ["  " + line for line in table.splitlines()]
    lines.append("Gate")
    if record.gate is None:
        lines.append("  no gate decision recorded (never becomes champion automatically)")
    else:
        lines.append(f"  {'blessed' if record.blessed else 'not blessed'}")
        lines += [f"  - {reason}" for reason in record.reasons]
    lines.append("Stage history")
    for event in events:
        source = event.from_stage.value if event.from_stage else "(new)"
        lines.append(f"  {_when(event.at)}  {source} -> {event.to_stage.value}  by {event.actor}: {event.reason}")
    if not events:
        lines.append("  (no stage yet)")
    return lines


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def _list_row(record: ModelVersion) -> list[str]:
    if record.is_rejection:
        note = "; ".join(record.reasons)
    elif record.status_reason:
        note = record.status_reason
    else:
        note = ""
    if len(note) > NOTE_WIDTH:
        note = note[: NOTE_WIDTH - 3] + "..."
    return [
        record.name,
        str(record.version) if record.version is not None else f"-(#{record.id})",
        record.stage.value if record.stage else "-",
        record.status.value,
        _number(record.accuracy),
        _when(record.created_at),
        note,
    ]


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
