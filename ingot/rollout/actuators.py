"""How a decision reaches the servers: the gateway's routing table and the model servers' configs.

Every method is idempotent (it writes the desired state, not a delta), so a controller that
crashed halfway through an action runs it again on restart and ends in the same place.

`LocalActuator` writes files on one machine: the routing file `ingot gateway --routes` reloads
and the `--model_config_file` of each `ingot serve` (polled with
`--model_config_file_poll_wait_seconds`). The Kubernetes actuator lives in `kubernetes.py`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ingot.errors import ConfigError, IngotError
from ingot.rollout.routing import (
    STABLE_LABEL,
    model_config_text,
    routing_table,
    routing_yaml,
)
from ingot.storage import atomic_write

if TYPE_CHECKING:
    from ingot.rollout.store import Rollout


class ActuationError(IngotError):
    """An action could not be completed (a server did not load a version in time, an API refused)."""


class Actuator(Protocol):
    def prepare(self, rollout: Rollout) -> None:
        """Make the challenger's server load the challenger version (weight stays 0)."""

    def available(self, rollout: Rollout, arm: str, version: int) -> bool:
        """Is `version` AVAILABLE on the `arm` server (the model status API)?"""

    def set_weight(self, rollout: Rollout, weight: int) -> None:
        """One routing write: the challenger gets `weight` percent; 0 withdraws it at once."""

    def promote(self, rollout: Rollout) -> None:
        """Champion servers load the challenger version beside the old one, wait for AVAILABLE,
        move the champion's version and `stable` label, set the challenger weight to 0, unload the old."""


def version_available(rest_url: str, model: str, version: int, timeout_s: float = 2.0) -> bool:
    """TF Serving's model status API says `version` is AVAILABLE (any failure reads as not yet)."""
    from ingot.client.base import Client, RetryPolicy

    try:
        with Client.connect(rest_url, timeout_s=timeout_s, retry=RetryPolicy(attempts=1)) as client:
            return any(s.version == version and s.state == "AVAILABLE" for s in client.status(model, version=version))
    except Exception:  # noqa: BLE001 - a server that is down or still starting is simply not available
        return False


def wait_available(probe: Any, what: str, timeout_s: float, poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise ActuationError(f"{what} did not become AVAILABLE within {timeout_s:g} s")
        time.sleep(poll_s)


class LocalActuator:
    """Files on one machine. `target` (stored with the rollout) names them:

    routes_file, drain_s (how long the old champion version stays loaded after the routing
    table stops naming it: at least the gateway's reload interval), and per arm (champion,
    challenger): rest, grpc, model_config_file, base_path.
    """

    def __init__(self, target: dict[str, Any], *, load_timeout_s: float = 120.0) -> None:
        if not target.get("routes_file"):
            raise ConfigError("the local actuator needs routes_file (the gateway's --routes file)")
        self.target = target
        self.load_timeout_s = load_timeout_s

    def _arm(self, arm: str) -> dict[str, Any]:
        return self.target.get(arm) or {}

    def _write_routes(self, rollout: Rollout, weight: int, champion_version: int) -> None:
        table = routing_table(self.target, model=rollout.model, experiment=rollout.experiment, weight=weight,
                              champion_version=champion_version, challenger_version=rollout.challenger_version)
        atomic_write(self.target["routes_file"], routing_yaml(table))

    def _write_model_config(self, rollout: Rollout, arm: str, versions: list[int], stable: int) -> None:
        spec = self._arm(arm)
        if not spec.get("model_config_file"):
            return  # this server's versions are managed elsewhere
        if not spec.get("base_path"):
            raise ConfigError(f"rollout target {arm}.model_config_file needs {arm}.base_path (the model's directory)")
        atomic_write(spec["model_config_file"], model_config_text(rollout.model, spec["base_path"], versions, stable))

    def _stable_label(self) -> int | None:
        """The version the champion server's `stable` label points at now (None if unmanaged)."""
        from ingot.serving.config import parse_model_server_config

        path = self._arm("champion").get("model_config_file")
        if not path:
            return None
        try:
            config = parse_model_server_config(Path(path).read_text(), source=path)
        except (OSError, ConfigError):
            return None
        entries = list(config.model_config_list.config)
        return int(entries[0].version_labels.get(STABLE_LABEL, 0)) or None if entries else None

    def prepare(self, rollout: Rollout) -> None:
        self._write_model_config(rollout, "challenger", [rollout.challenger_version], rollout.challenger_version)
        if not Path(self.target["routes_file"]).exists():
            self._write_routes(rollout, 0, rollout.champion_version)

    def available(self, rollout: Rollout, arm: str, version: int) -> bool:
        rest = self._arm(arm).get("rest")
        if not rest:
            raise ConfigError(f"rollout target has no {arm}.rest URL")
        return version_available(rest, rollout.model, version)

    def set_weight(self, rollout: Rollout, weight: int) -> None:
        self._write_routes(rollout, weight, rollout.champion_version)

    def promote(self, rollout: Rollout) -> None:
        old, new = rollout.champion_version, rollout.challenger_version
        table = _read_table(self.target["routes_file"])
        pinned = _champion_version(table) == new
        # A resumed promotion skips what is done: once the label (or the pin) is on the new
        # version it never goes back to the old one.
        if not pinned and self._stable_label() != new:
            self._write_model_config(rollout, "champion", [old, new], old)
        wait_available(lambda: self.available(rollout, "champion", new), f"{rollout.model}:{new} on the champion server",
                       self.load_timeout_s)
        if not pinned:
            self._write_model_config(rollout, "champion", [old, new], new)  # the stable label moves
        # One routing write: the champion is pinned to the new version and the challenger's share
        # (the same version) folds into it.
        self._write_routes(rollout, 0, new)
        # The gateway re-reads the table within its reload interval; requests it routed to the old
        # version before that must still find it loaded, so the unload waits for `drain_s`.
        time.sleep(float(self.target.get("drain_s", 5.0)))
        self._write_model_config(rollout, "champion", [new], new)  # the old version unloads


def _read_table(routes_file: str) -> dict[str, Any]:
    """The routing table as last written ({} when missing or unreadable)."""
    import yaml

    try:
        table = yaml.safe_load(Path(routes_file).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return table if isinstance(table, dict) else {}


def _champion_version(table: dict[str, Any]) -> int | None:
    try:
        return int(table["upstreams"]["champion"]["version"])
    except (KeyError, TypeError, ValueError):
        return None


def actuator_for(target: dict[str, Any]) -> Actuator:
    kind = target.get("actuator", "local")
    if kind == "local":
        return LocalActuator(target)
    if kind == "kubernetes":
        from ingot.rollout.kubernetes import KubernetesActuator

        return KubernetesActuator.from_target(target)
    raise ConfigError(f"unknown actuator {kind!r}; expected local or kubernetes")
