"""The gateway's routing table: which upstreams serve the champion and the challenger of one
model, how unpinned traffic is split, and what is mirrored.

The rollout controller writes it (`dump`), the gateway reads it (`load_routing_table`) and
re-reads it when the file changes (`RoutingTableWatcher`); a broken edit is refused with one log
line and the last good table keeps serving. Shape (docs/gateway.md):

    model: digits                       # the TF Serving model name clients use
    experiment: digits-v2-vs-v1         # written into every inference-log row
    salt: digits-v2-vs-v1               # sticky-hash salt (default: the experiment id)
    caller_header: x-ingot-caller       # the caller key for sticky assignment
    weights: {challenger: 10}           # percent of unpinned traffic to the challenger, 0..100
    mirror: 0                           # percent of champion traffic copied to the challenger
    upstreams:
      champion:   {rest: "http://127.0.0.1:8501", grpc: "127.0.0.1:8500", version: 1}
      challenger: {rest: "http://127.0.0.1:8511", grpc: "127.0.0.1:8510", version: 2}
    feedback_token_file: ""             # when set, POST /v1/feedback needs this bearer token
    pin_token_file: ""                  # when set, a pin (x-ingot-variant, versions/N, labels/L) needs this token
    trusted_caller_header: ""           # = caller_header when the edge sets it: sticky rows are then evidence
    capture: {sample: 0.2, max_bytes: 10GiB, retention_days: 30}   # inputs kept (ingot.capture)

An arm's upstream entry may add `cascade: {small: {rest, grpc, version}, threshold: 0.93}`: its
small model answers when sure, the arm's own model otherwise (ingot.gateway.cascade).

Every upstream request names the variant's `version` explicitly, so the version the gateway
reports and logs is the one that answered. The challenger may be left out (then its weight and
the mirror must be 0).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ingot.capture.policy import CapturePolicy, parse_policy
from ingot.errors import ConfigError
from ingot.gateway.fallback import RESILIENCE_KEYS, PolicyError, Resilience, parse_resilience
from ingot.protocol import headers
from ingot.protocol.names import EXPERIMENT_NAME, MODEL_NAME, MODEL_NAME_RULE
from ingot.storage import sha256_text

if TYPE_CHECKING:
    from ingot.gateway.cascade import Cascade

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
VARIANTS = (CHAMPION, CHALLENGER)
PREVIOUS_CHAMPION = "previous_champion"  # an upstream only the fallback chain uses
DEFAULT_CALLER_HEADER = headers.CALLER
_TOP_KEYS = ("model", "experiment", "salt", "caller_header", "weights", "mirror", "upstreams",
             "feedback_token_file", "pin_token_file", "trusted_caller_header", "capture",
             *RESILIENCE_KEYS)
_UPSTREAM_KEYS = ("rest", "grpc", "version")
_ARM_KEYS = (*_UPSTREAM_KEYS, "cascade")  # an arm's entry may carry a cascade (ingot.gateway.cascade)
_HEADER = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})$")


class RoutingError(ConfigError):
    """The routing table is invalid; the message names the key and what is expected."""


@dataclass(frozen=True)
class Upstream:
    """One variant's model server: TF Serving's REST base URL and gRPC target, and its version."""

    rest: str
    grpc: str
    version: int


@dataclass(frozen=True)
class RoutingTable:
    model: str
    upstreams: Mapping[str, Upstream]
    experiment: str | None = None
    salt: str = ""
    caller_header: str = DEFAULT_CALLER_HEADER
    challenger_weight: float = 0.0
    mirror: float = 0.0
    feedback_token_file: str = ""
    resilience: Resilience = field(default_factory=Resilience)  # cache, fallback chain, deadline
    previous_champion: Upstream | None = None  # only the fallback chain sends here, never A/B traffic
    pin_token_file: str = ""  # when set, pinned predicts need x-ingot-pin-token (docs/gateway.md)
    trusted_caller_header: str = ""  # the caller_header, when a trusted edge sets it (sticky rows are evidence)
    capture: CapturePolicy | None = None  # None: no input is stored
    cascades: Mapping[str, Cascade] = field(default_factory=dict)  # arm -> its cascade (ingot.gateway.cascade)
    digest: str = field(default="", compare=False)  # sha256 of the text it was read from

    @property
    def champion(self) -> Upstream:
        return self.upstreams[CHAMPION]

    @property
    def challenger(self) -> Upstream | None:
        return self.upstreams.get(CHALLENGER)

    def variant_for_version(self, version: int) -> str | None:
        """The variant serving `version` (for `versions/N` requests), or None."""
        for variant in VARIANTS:
            upstream = self.upstreams.get(variant)
            if upstream is not None and upstream.version == version:
                return variant
        return None

    def all_upstreams(self) -> list[Upstream]:
        """Every model server the table names: the arms' and their cascades' small ones."""
        return [*self.upstreams.values(), *(c.small for c in self.cascades.values())]

    def as_dict(self) -> dict[str, Any]:
        """The YAML document's shape (what `dump` writes and `validate` reads)."""
        doc: dict[str, Any] = {"model": self.model}
        if self.experiment is not None:
            doc["experiment"] = self.experiment
        doc["salt"] = self.salt
        doc["caller_header"] = self.caller_header
        doc["weights"] = {CHALLENGER: _plain_number(self.challenger_weight)}
        doc["mirror"] = _plain_number(self.mirror)
        doc["upstreams"] = {
            variant: {"rest": up.rest, "grpc": up.grpc, "version": up.version}
            for variant, up in self.upstreams.items()
        }
        for variant, cascade in self.cascades.items():
            doc["upstreams"][variant]["cascade"] = cascade.as_dict()
        doc["feedback_token_file"] = self.feedback_token_file
        if self.previous_champion is not None:
            up = self.previous_champion
            doc["upstreams"][PREVIOUS_CHAMPION] = {"rest": up.rest, "grpc": up.grpc, "version": up.version}
        doc.update(self.resilience.as_dict())
        if self.pin_token_file:
            doc["pin_token_file"] = self.pin_token_file
        if self.trusted_caller_header:
            doc["trusted_caller_header"] = self.trusted_caller_header
        if self.capture is not None:
            doc["capture"] = self.capture.as_dict()
        return doc


def _plain_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def validate(doc: Any, *, digest: str = "") -> RoutingTable:
    """A RoutingTable from the parsed YAML document, or RoutingError naming the key at fault."""
    if not isinstance(doc, Mapping):
        raise RoutingError(f"routing table must be a mapping with keys {', '.join(_TOP_KEYS)}; "
                           f"got {type(doc).__name__}")
    _no_unknown_keys(doc, _TOP_KEYS, "")
    model = _model(doc)
    experiment = _experiment(doc)
    salt = doc.get("salt")
    if salt is None or salt == "":
        salt = experiment or model
    elif not isinstance(salt, str):
        raise RoutingError(f"routing table salt: expected a string, got {salt!r}")
    caller_header = doc.get("caller_header", DEFAULT_CALLER_HEADER)
    if not isinstance(caller_header, str) or not _HEADER.fullmatch(caller_header.lower()):
        raise RoutingError(f"routing table caller_header: expected an HTTP header name such as "
                           f"{DEFAULT_CALLER_HEADER!r}, got {caller_header!r}")
    caller_header = caller_header.lower()
    if caller_header in headers.RESERVED:  # the gateway's own: a caller key must be something else
        raise RoutingError(f"routing table caller_header: {caller_header!r} is a header the gateway uses "
                           f"itself; name a caller-key header such as {DEFAULT_CALLER_HEADER!r}")
    weights = doc.get("weights", {CHALLENGER: 0})
    if not isinstance(weights, Mapping):
        raise RoutingError(f"routing table weights: expected a mapping {{challenger: 0..100}}, got {weights!r}")
    _no_unknown_keys(weights, (CHALLENGER,), "weights.")
    challenger_weight = _percent(weights.get(CHALLENGER, 0), "weights.challenger")
    mirror = _percent(doc.get("mirror", 0), "mirror")
    upstreams_doc = doc.get("upstreams")
    if not isinstance(upstreams_doc, Mapping):
        raise RoutingError("routing table upstreams: expected a mapping with champion (and optionally "
                           f"challenger), each {{rest, grpc, version}}; got {upstreams_doc!r}")
    _no_unknown_keys(upstreams_doc, (*VARIANTS, PREVIOUS_CHAMPION), "upstreams.")
    if CHAMPION not in upstreams_doc:
        raise RoutingError("routing table upstreams.champion: missing; expected {rest, grpc, version}")
    upstreams = {variant: _upstream(upstreams_doc[variant], f"upstreams.{variant}", _ARM_KEYS)
                 for variant in VARIANTS if variant in upstreams_doc}
    cascades = _cascades(upstreams_doc)
    previous = (_upstream(upstreams_doc[PREVIOUS_CHAMPION], f"upstreams.{PREVIOUS_CHAMPION}")
                if PREVIOUS_CHAMPION in upstreams_doc else None)
    if CHALLENGER not in upstreams and (challenger_weight or mirror):
        raise RoutingError("routing table weights.challenger and mirror must be 0 when upstreams.challenger "
                           "is not set")
    if CHALLENGER in upstreams and upstreams[CHALLENGER].version == upstreams[CHAMPION].version:
        raise RoutingError("routing table upstreams.challenger.version: must differ from the champion's "
                           f"({upstreams[CHAMPION].version}); versions/N requests route by version")
    token_file = doc.get("feedback_token_file") or ""
    if not isinstance(token_file, str):
        raise RoutingError(f"routing table feedback_token_file: expected a file path or \"\", got {token_file!r}")
    try:
        resilience = parse_resilience(doc, has_previous_champion=previous is not None)
    except PolicyError as err:
        raise RoutingError(str(err)) from None
    capture = None
    if doc.get("capture") is not None:
        try:
            capture = parse_policy(doc["capture"])
        except ConfigError as err:
            raise RoutingError(str(err)) from None
    pin_token_file = doc.get("pin_token_file") or ""
    if not isinstance(pin_token_file, str):
        raise RoutingError(f"routing table pin_token_file: expected a file path or \"\", got {pin_token_file!r}")
    trusted = _trusted_caller_header(doc.get("trusted_caller_header"), caller_header)
    return RoutingTable(
        resilience=resilience, previous_champion=previous, model=model, experiment=experiment, salt=salt, caller_header=caller_header,
        challenger_weight=challenger_weight, mirror=mirror, upstreams=upstreams,
        feedback_token_file=token_file, pin_token_file=pin_token_file, trusted_caller_header=trusted,
        capture=capture, cascades=cascades, digest=digest,
    )


def _cascades(upstreams_doc: Mapping[str, Any]) -> dict[str, Cascade]:
    from ingot.gateway.cascade import parse_cascade

    return {variant: parse_cascade(upstreams_doc[variant]["cascade"], f"upstreams.{variant}.cascade")
            for variant in VARIANTS
            if variant in upstreams_doc and upstreams_doc[variant].get("cascade") is not None}


def _trusted_caller_header(value: Any, caller_header: str) -> str:
    """The caller header, when the table says a trusted edge sets it (sticky rows are then
    evidence); "" when omitted. Any other header is refused: trust belongs to the key used."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or value.lower() != caller_header:
        raise RoutingError(f"routing table trusted_caller_header: expected the caller_header {caller_header!r} "
                           "(when the edge in front of the gateway sets it, replacing what callers send) or "
                           f"nothing, got {value!r}")
    return caller_header


def _no_unknown_keys(doc: Mapping[Any, Any], allowed: tuple[str, ...], prefix: str) -> None:
    unknown = sorted(str(key) for key in doc if key not in allowed)
    if unknown:
        raise RoutingError(f"routing table {prefix}{unknown[0]}: unknown key; expected one of {', '.join(allowed)}")


def _model(doc: Mapping[str, Any]) -> str:
    value = doc.get("model")
    if not isinstance(value, str) or not MODEL_NAME.fullmatch(value):
        raise RoutingError(f"routing table model: expected a name of {MODEL_NAME_RULE}, got {value!r}")
    return value


def _experiment(doc: Mapping[str, Any]) -> str | None:
    value = doc.get("experiment")
    if value is None:
        return None
    if not isinstance(value, str) or not EXPERIMENT_NAME.fullmatch(value):
        raise RoutingError(f"routing table experiment: expected a name of letters, digits, '.', '_' or '-' "
                           f"(at most 128), got {value!r}")
    return value


def _percent(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 100:
        raise RoutingError(f"routing table {key}: expected a percentage 0..100, got {value!r}")
    if round(value * 100) != value * 100:
        raise RoutingError(f"routing table {key}: at most two decimals (the split has 10,000 buckets), got {value!r}")
    return float(value)


def _upstream(doc: Any, key: str, keys: tuple[str, ...] = _UPSTREAM_KEYS) -> Upstream:
    if not isinstance(doc, Mapping):
        raise RoutingError(f"routing table {key}: expected a mapping {{rest, grpc, version}}, got {doc!r}")
    _no_unknown_keys(doc, keys, f"{key}.")
    rest = doc.get("rest")
    parts = urlsplit(rest) if isinstance(rest, str) else None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or parts.username or parts.password or parts.path not in ("", "/")
            or not _port_ok(parts)):
        raise RoutingError(f"routing table {key}.rest: expected TF Serving's REST base URL such as "
                           f"'http://host:8501' (no path), got {rest!r}")
    grpc_target = doc.get("grpc")
    match = _HOST_PORT.fullmatch(grpc_target) if isinstance(grpc_target, str) else None
    if match is None or not 0 < int(match["port"]) < 65536:
        raise RoutingError(f"routing table {key}.grpc: expected TF Serving's gRPC target 'host:port' such as "
                           f"'host:8500', got {grpc_target!r}")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RoutingError(f"routing table {key}.version: expected the model version it serves, an integer >= 1, "
                           f"got {version!r}")
    return Upstream(rest=str(rest).rstrip("/"), grpc=str(grpc_target), version=version)


def _port_ok(parts: Any) -> bool:
    try:
        return parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return False


def parse(text: str) -> RoutingTable:
    """A RoutingTable from YAML text."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RoutingError(f"routing table is not valid YAML: {' '.join(str(err).split())}") from None
    return validate(doc, digest=sha256_text(text))


def load_routing_table(path: str | Path) -> RoutingTable:
    """Read and validate the routing table file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RoutingError(f"cannot read routing table {path}: {err}") from None
    return parse(text)


def dump(table: RoutingTable | Mapping[str, Any]) -> str:
    """YAML text for a table (validated first, so a writer can never produce one the gateway refuses)."""
    import yaml

    checked = table if isinstance(table, RoutingTable) else validate(table)
    return yaml.safe_dump(checked.as_dict(), sort_keys=False)


def check_token_files(table: RoutingTable) -> RoutingTable:
    """The table when every token file it names holds a usable token (at least 32 bytes);
    otherwise RoutingError naming the file. Only the gateway calls this (the files are its own)."""
    from ingot.errors import ConfigError
    from ingot.storage import read_token_file

    if table.feedback_token_file:
        try:
            read_token_file(table.feedback_token_file, what="routing table feedback_token_file")
        except ConfigError as err:
            raise RoutingError(str(err)) from None
    return table


class RoutingTableWatcher:
    """Re-reads the routing file when its content changes; keeps the last good table on a broken edit.

    `check()` is cheap (reads a small file and compares its hash) and is called periodically by
    the gateway. Each distinct broken content is logged once, not at every poll.
    """

    def __init__(self, path: str | Path, *, on_change: Callable[[RoutingTable], None] | None = None) -> None:
        self.path = Path(path)
        self.table = check_token_files(load_routing_table(self.path))
        self._on_change = on_change
        self._seen = self.table.digest
        self.reloads = 0
        self.rejections = 0

    def check(self) -> bool:
        """Reload if the file changed; True when a new table was taken."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            digest = f"unreadable: {err}"
            if digest != self._seen:
                self._seen = digest
                self.rejections += 1
                log.error("routing table %s cannot be read (%s); keeping the last good table", self.path, err)
            return False
        digest = sha256_text(text)
        if digest == self._seen:
            return False
        self._seen = digest
        try:
            table = check_token_files(parse(text))
        except RoutingError as err:
            self.rejections += 1
            log.error("routing table %s edit refused, keeping the last good table: %s", self.path, err)
            return False
        self.table = table
        self.reloads += 1
        log.info("routing table %s reloaded: challenger weight %s, mirror %s", self.path,
                 _plain_number(table.challenger_weight), _plain_number(table.mirror))
        if self._on_change is not None:
            self._on_change(table)
        return True
