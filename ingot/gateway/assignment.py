"""Which variant answers a request: header pin, else sticky hash of the caller key, else random.

Sticky: bucket = sha256(salt, key) mod 10000 and the caller gets the challenger when
bucket < weight x 100. Buckets are uniform, so a weight of w% sends w% of callers (unbiased);
and since the threshold only rises with the weight, a caller never moves back to the champion as
the challenger's weight grows. No state is kept: every gateway replica agrees.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass

from ingot.gateway.routing import CHALLENGER, CHAMPION, VARIANTS, RoutingTable
from ingot.protocol.headers import VARIANT

BUCKETS = 10_000

HEADER = "header"
STICKY = "sticky"
WEIGHT = "weight"
MIRROR = "mirror"
FALLBACK = "fallback"


class InvalidPin(ValueError):
    """The pin header names no variant."""


@dataclass(frozen=True)
class Assignment:
    variant: str  # champion | challenger
    how: str      # header | sticky | weight


def bucket(salt: str, key: str) -> int:
    """The caller's bucket 0..9999 for this salt (the first 8 bytes of sha256, mod 10000)."""
    digest = hashlib.sha256(salt.encode() + b"\x00" + key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(table: RoutingTable, headers: Mapping[str, str], rng: random.Random | None = None) -> Assignment:
    """Pick the variant for one request; `headers` have lower-case names."""
    pin = headers.get(VARIANT)
    if pin is not None and pin != "":
        pin = pin.strip().lower()
        if pin not in VARIANTS:
            raise InvalidPin(f"{VARIANT} must be one of {', '.join(VARIANTS)}, got {pin[:40]!r}")
        return Assignment(pin, HEADER)
    threshold = round(table.challenger_weight * 100) if table.challenger is not None else 0
    key = headers.get(table.caller_header)
    if key:
        return Assignment(CHALLENGER if bucket(table.salt, key) < threshold else CHAMPION, STICKY)
    draw = (rng or random).randrange(BUCKETS)
    return Assignment(CHALLENGER if draw < threshold else CHAMPION, WEIGHT)


def should_mirror(table: RoutingTable, assignment: Assignment, rng: random.Random | None = None) -> bool:
    """Copy this champion-served request to the challenger? (`mirror` percent of them.)"""
    if assignment.variant != CHAMPION or table.challenger is None or table.mirror <= 0:
        return False
    return (rng or random).randrange(BUCKETS) < round(table.mirror * 100)
