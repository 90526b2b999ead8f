"""Checks of what callers hand the registry, done before any transaction opens: names, texts,
JSON documents, version specs, rejections, verifiers, stage and status names."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ingot.errors import ConfigError
from ingot.protocol.names import check_model_name
from ingot.registry.records import NewVersion, Stage, Status
from ingot.registry.verify import Verifier, checksum_verifier

_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def check_name(name: object) -> None:
    """The one model-name rule (it becomes a directory, a URL path segment and a label value)."""
    check_model_name(name)


def check_text(what: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")


def json_dict(what: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping (JSON object), got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be JSON-serializable (no NaN, numpy scalars or objects): {err}") from None
    return dict(value)


def checked_spec(name: str, spec: NewVersion) -> NewVersion:
    """`spec` checked and normalised (lower-case sha256, plain dicts); a gate must have blessed it."""
    if not isinstance(spec.version, int) or isinstance(spec.version, bool) or spec.version < 1:
        raise ConfigError(
            f"version of {name} must be a positive integer (the model repository's directory), got {spec.version!r}"
        )
    check_text("artifact_uri", spec.artifact_uri)
    sha = spec.model_sha256.lower() if isinstance(spec.model_sha256, str) else spec.model_sha256
    if not isinstance(sha, str) or not _SHA256_PATTERN.match(sha):
        raise ConfigError(f"model_sha256 of {name}:{spec.version} must be 64 hex digits, got {spec.model_sha256!r}")
    if spec.gate is not None and spec.gate.get("blessed") is not True:
        raise ConfigError(
            f"the gate did not bless {name}:{spec.version}; record it with record_rejection() instead of registering it"
        )
    if spec.pipeline_run_id is not None:
        check_text("pipeline_run_id", spec.pipeline_run_id)
    if spec.data_hash is not None:
        check_text("data_hash", spec.data_hash)
    return NewVersion(
        version=spec.version, artifact_uri=spec.artifact_uri, model_sha256=sha, data_hash=spec.data_hash,
        config=json_dict("config", spec.config), metrics=json_dict("metrics", spec.metrics),
        gate=json_dict("gate", spec.gate) if spec.gate is not None else None, pipeline_run_id=spec.pipeline_run_id,
    )


def checked_batch(name: str, versions: Sequence[NewVersion]) -> dict[int, NewVersion]:
    """The specs of one batch by version number; one number with two sha256 is an error."""
    by_number: dict[int, NewVersion] = {}
    for spec in (checked_spec(name, spec) for spec in versions):
        seen = by_number.setdefault(spec.version, spec)
        if seen.model_sha256 != spec.model_sha256:
            raise ConfigError(f"{name}:{spec.version} appears twice in one batch with different sha256")
    return by_number


def rejection_decision(name: str, reasons: Sequence[str], gate: Mapping[str, Any] | None) -> dict[str, Any]:
    """The gate decision a rejection stores: the caller's, never blessed, with its reasons."""
    if isinstance(reasons, str) or not reasons or not all(isinstance(r, str) and r.strip() for r in reasons):
        raise ConfigError("a rejection needs reasons: a non-empty list of non-empty strings")
    if gate is not None and gate.get("blessed") is True:
        raise ConfigError(f"gate decision for {name} is blessed; register the published version instead")
    decision = {**dict(gate or {}), "blessed": False, "reasons": [r.strip() for r in reasons]}
    json_dict("gate", decision)
    return decision


def as_verifier(verify: Verifier | Mapping[str, str]) -> Verifier:
    if isinstance(verify, Mapping):
        return checksum_verifier(verify)
    if callable(verify):
        return verify
    raise ConfigError(
        "verify must be a callable (artifact_uri, model_sha256) -> bool or a mapping of relative path -> sha256"
    )


def parse_stage(stage: Stage | str) -> Stage:
    try:
        return Stage(stage)
    except ValueError:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {', '.join(s.value for s in Stage)}") from None


def parse_status(status: Status | str) -> Status:
    try:
        return Status(str(status).upper())
    except ValueError:
        raise ConfigError(f"unknown status {status!r}; expected one of {', '.join(s.value for s in Status)}") from None
