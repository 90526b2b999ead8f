"""What the loop reads from its recipes and policy files, and the registry's newest record: small
lookups the stages share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingot.errors import ConfigError, IngotError


def policy_auto(path: Path) -> bool:
    """The rollout policy's `auto` (validated as `ingot rollout start` validates the whole file)."""
    import yaml

    from ingot.rollout.analysis import Policy

    try:
        return Policy.from_dict(yaml.safe_load(Path(path).read_text()) or {}).auto
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read the rollout policy {path}: {err}") from None


def recipe_reason(path: Path) -> list[str]:
    """The recipe's opening comment: why it differs (every recipe in configs/ starts with one)."""
    lines = []
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return [line for line in lines if line] or ["(the recipe gives no reason in its opening comment)"]


def newest_record_id(registry: Any, model: str) -> int:
    try:
        records = registry.list_versions(model, limit=1)
    except IngotError:
        return 0
    return records[0].id if records else 0
