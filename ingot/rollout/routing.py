"""The routing table the controller writes for the gateway (the shape in docs/architecture.md),
and the TF Serving model config each server loads; both built from a rollout's target.

The controller is the routing table's only writer; a table is always written whole, to a
temporary file renamed over the old one (`ingot.storage.atomic_write`, or as one ConfigMap update), so the gateway never
reads half a table.
"""

from __future__ import annotations

import copy
from typing import Any

from ingot.errors import ConfigError
from ingot.protocol.headers import CALLER

STABLE_LABEL = "stable"
# The table's settings a rollout never changes: every table the controller writes carries them as
# the target gives them (the chart renders the target's from the values its table uses). A test
# holds this to the gateway's own keys (ingot.gateway.fallback.RESILIENCE_KEYS and capture).
POLICY_KEYS = ("capture", "cache", "fallback", "default_answer", "deadline_ms", "breaker")
PREVIOUS_CHAMPION = "previous_champion"  # the fallback chain's upstream, never A/B traffic
# An arm's key in the target: its cascade's small server serves the arm's own version (e.g. its
# int8 model.tflite) and moves with it, so a table names the version the arm serves in it.
FOLLOWS_VERSION = "cascade_follows_version"


def routing_table(target: dict[str, Any], *, model: str, experiment: str, weight: int,
                  champion_version: int, challenger_version: int) -> dict[str, Any]:
    """The gateway's routing table for one state of a rollout. Once the champion serves the
    challenger's version (promoted) the challenger upstream is left out: the gateway routes by
    version and refuses two arms on one version; and the champion arm takes the challenger's
    cascade (the arm as it was tested: its small server serves the promoted version's small
    model), or none when the challenger had none. An arm whose target says FOLLOWS_VERSION has
    its cascade's small version set to the version the arm serves in this table. The target's
    POLICY_KEYS and previous_champion upstream go into every table unchanged."""
    if not 0 <= weight <= 100:
        raise ConfigError(f"challenger weight {weight} is out of range; expected 0..100")
    promoted = champion_version == challenger_version
    upstreams = {}
    arms = [("champion", champion_version), ("challenger", challenger_version)]
    if promoted:
        # Promoted: the champion's servers serve the new version, so the challenger's share has
        # nowhere else to go; the pin moves and the challenger leaves the table in one write.
        arms, weight = arms[:1], 0
    for arm, version in arms:
        spec = target.get(arm) or {}
        for key, flag in (("rest", "rest URL"), ("grpc", "gRPC host:port")):
            if not spec.get(key):
                raise ConfigError(f"rollout target has no {arm}.{key} ({flag}); pass --{arm}-{key}")
        upstreams[arm] = {"rest": spec["rest"], "grpc": spec["grpc"], "version": int(version)}
        # The arm is a whole cascade (small model first): the A/B test compares cascades, and a
        # promotion promotes the challenger's whole arm, its cascade included.
        source = (target.get("challenger") or {}) if promoted else spec
        if source.get("cascade"):
            cascade = copy.deepcopy(source["cascade"])
            if source.get(FOLLOWS_VERSION):  # the arm's own small model (its int8): the version it serves now
                cascade["small"]["version"] = int(version)
            upstreams[arm]["cascade"] = cascade
    previous = target.get(PREVIOUS_CHAMPION)
    if previous:
        upstreams[PREVIOUS_CHAMPION] = {"rest": previous["rest"], "grpc": previous["grpc"],
                                        "version": int(previous["version"])}
    return {
        "model": model,
        "experiment": experiment,
        "salt": target.get("salt") or experiment,
        "caller_header": target.get("caller_header", CALLER),
        "weights": {"challenger": int(weight)},
        "mirror": 0 if promoted else target.get("mirror", 0),
        "upstreams": upstreams,
        "feedback_token_file": target.get("feedback_token_file", ""),
        # Pins need this token; sticky rows are evidence only when the edge sets the caller header.
        "pin_token_file": target.get("pin_token_file", ""),
        "trusted_caller_header": target.get("trusted_caller_header", ""),
        # Input capture, the cache, the fallback chain, the deadline and the breakers stay as
        # configured through every rewrite of the table.
        **{key: copy.deepcopy(target[key]) for key in POLICY_KEYS if target.get(key) is not None},
    }


def routing_yaml(table: dict[str, Any]) -> str:
    """YAML text of a table, checked by the gateway's own validator, so the controller never
    writes a table the gateway would refuse."""
    from ingot.gateway.routing import dump

    return dump(table)


def model_config_text(model: str, base_path: str, versions: list[int], stable: int) -> str:
    """A ModelServerConfig serving exactly `versions`, with the `stable` label on `stable`."""
    from tensorflow_serving.config import model_server_config_pb2

    from ingot.serving.config import model_config_text as to_text
    from ingot.serving.config import validate_model_server_config

    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name = model
    entry.base_path = base_path
    entry.model_platform = "tensorflow"
    entry.model_version_policy.specific.versions.extend(sorted(set(versions)))
    entry.version_labels[STABLE_LABEL] = int(stable)
    validate_model_server_config(config, source=f"model config of {model}")
    return to_text(config)
