"""Which model a request names, on both wires: TF Serving's ModelSpec (a name, and a version
number or a version label, never both), as a gRPC ModelSpec message and as a REST path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ingot.protocol.names import WIRE_NAME_RULE, is_wire_name
from ingot.protocol.status import invalid_argument

SHOWN_CHARS = 64  # how much of a refused name an error message repeats


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: int | None = None
    label: str | None = None

    def check_wire(self) -> ModelSpec:
        """This spec when its model name and version label follow `WIRE_NAME`; otherwise
        INVALID_ARGUMENT naming the rule. Front ends call it before anything is looked up,
        logged or counted for the names, so a caller cannot grow memory with long names."""
        if not is_wire_name(self.name):
            raise invalid_argument(f"model name {shown(self.name)} is not valid: use {WIRE_NAME_RULE}")
        if self.label is not None and not is_wire_name(self.label):
            raise invalid_argument(f"version label {shown(self.label)} is not valid: use {WIRE_NAME_RULE}")
        return self

    def as_tuple(self) -> tuple[str, int | None, str | None]:
        return self.name, self.version, self.label

    def path(self, suffix: str = "") -> str:
        """`/v1/models/<name>[/versions/<v>|/labels/<l>]<suffix>` (suffix `:predict`, `/metadata`
        or none for the status); every caller-derived part quoted, so no name can smuggle a path."""
        path = f"/v1/models/{quote(self.name, safe='')}"
        if self.version is not None:
            path += f"/versions/{int(self.version)}"
        elif self.label is not None:
            path += f"/labels/{quote(self.label, safe='')}"
        return path + suffix

    def fill(self, proto: Any, signature_name: str | None = None) -> Any:
        """Write this spec into a tensorflow.serving.ModelSpec message (and the signature name,
        when given); returns the message."""
        proto.name = self.name
        if self.version is not None:
            proto.version.value = int(self.version)
        elif self.label is not None:
            proto.version_label = self.label
        if signature_name is not None:
            proto.signature_name = signature_name
        return proto


def shown(text: str) -> str:
    """A caller's string for an error message: quoted, at most SHOWN_CHARS of it."""
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}... ({len(text)} characters)"
