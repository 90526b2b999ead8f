"""Which logged rows are evidence: the rows a randomised assignment produced and the assigned
model answered. Rollouts and drift windows count only these (docs/architecture.md, inference log).

- `weight`: a random draw per request, always randomised;
- `sticky`: randomised by the caller key's hash, but a caller who picks the key picks the arm
  (keys for each arm are found offline), so only when the routing table's
  `trusted_caller_header` says the key is set by a trusted edge, not by the caller;
- `header` (pins, versions, labels), `mirror` and `fallback`: logged, never evidence.

An answer from the assigned model is an OK one or an upstream failure (UNAVAILABLE,
DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED); a caller's own error (INVALID_ARGUMENT and the
like) says nothing about the model and is never evidence.
"""

from __future__ import annotations

from ingot.gateway.assignment import STICKY, WEIGHT
from ingot.gateway.routing import RoutingTable
from ingot.inference_log.schema import OK, UPSTREAM_FAILURES

_ANSWERED = frozenset((OK, *UPSTREAM_FAILURES))


def trusts_caller_key(table: RoutingTable) -> bool:
    return bool(table.trusted_caller_header) and table.trusted_caller_header == table.caller_header


def is_evidence(table: RoutingTable, how: str | None, status: str) -> bool:
    if status not in _ANSWERED:
        return False
    return how == WEIGHT or (how == STICKY and trusts_caller_key(table))
