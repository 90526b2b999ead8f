"""Names on the wire and on disk: model names and version labels.

Two rules, each defined once:
- `MODEL_NAME`: a model Ingot creates (published, registered, routed, rolled out). It becomes a
  directory name, a URL path segment and part of Kubernetes resource and label names, so it is
  1-63 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit (the
  rule publishing has always enforced, so every published model already follows it).
- `WIRE_NAME`: what a request may carry as a model name or version label before anything is
  looked up or allocated for it (bounded, so a caller cannot grow memory with long names).

And the experiment id a rollout and the routing table name (`EXPERIMENT_NAME`, written into every
inference-log row): longer than a model name, since it usually embeds one.
"""

from __future__ import annotations

import re

from ingot.errors import ConfigError

MODEL_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?$")
MODEL_NAME_RULE = (
    "1-63 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit (no slashes or dots)"
)
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
WIRE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
WIRE_NAME_RULE = "1-128 letters, digits, '.', '_' or '-'"


def is_model_name(name: object) -> bool:
    return isinstance(name, str) and MODEL_NAME.fullmatch(name) is not None


def check_model_name(name: object, *, error: type[Exception] = ConfigError, what: str = "model name") -> str:
    """`name` when it follows MODEL_NAME; otherwise `error` naming the value and the rule."""
    if not is_model_name(name):
        raise error(f"{what} {name!r} is not valid; use {MODEL_NAME_RULE}")
    return name  # type: ignore[return-value]


def is_wire_name(name: object) -> bool:
    return isinstance(name, str) and WIRE_NAME.fullmatch(name) is not None
