"""TF Serving's REST routes (model_servers/http_rest_api_util.cc): which `/v1/` paths exist and
what they name. Anything else under `/v1/` is "Malformed request", as in TF Serving."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from ingot.protocol.status import invalid_argument

PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
INT64_MAX = (1 << 63) - 1
FEEDBACK_PATH = "/v1/feedback"  # Ingot's gateway: ground-truth labels for logged predictions


@dataclass(frozen=True)
class V1Route:
    kind: str  # predict | classify | regress | status | metadata
    model_name: str
    version: int | None = None
    label: str | None = None


def parse_v1_path(method: str, raw_path: str) -> V1Route:
    """Match a /v1/ path the way TF Serving does; anything else under /v1/ is 'Malformed'."""
    malformed = invalid_argument(f"Malformed request: {method} {raw_path}")
    if method == "POST":
        match = PREDICTION_PATH.fullmatch(raw_path)
        if not match or match.group(4) not in ("predict", "classify", "regress"):
            raise malformed
        name, version, label, kind = match.groups()
    elif method == "GET":
        match = STATUS_PATH.fullmatch(raw_path)
        if not match:
            raise malformed
        name, version, label, sub = match.groups()
        kind = "metadata" if sub == "metadata" else "status"
        if sub is not None and sub != "metadata":
            raise malformed
    else:
        raise malformed
    name = unquote(name or "")
    number = None
    if version:
        # Compare digits before int(): Python refuses to convert more than 4,300 digits.
        digits = version.lstrip("0") or "0"
        number = int(digits) if len(digits) <= len(str(INT64_MAX)) else INT64_MAX + 1
        if number > INT64_MAX:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
    if kind in ("status", "metadata") and not name:
        raise invalid_argument("Missing model name in request.")
    if number is not None and label:
        raise invalid_argument(
            f"Both model version ({number}) and model version label ({label}) cannot be supplied."
        )
    return V1Route(kind, name, number, unquote(label) if label else None)
