"""The upstream part of the gateway's fallback chain, each upstream behind its own breaker.

Order: the assigned upstream; then, as ever, the champion when an assigned challenger cannot be
reached; then the steps the routing table's `fallback` lists (ingot.gateway.fallback): the
challenger for a champion that failed (`other_arm`) and the previous champion version
(`previous_champion`). The steps past the model servers (`cached`, `default`) are the backend's.

The built-in challenger-to-champion hand-off happens only when the challenger cannot be reached
(as before: a challenger's own errors stay its errors in the A/B evidence); configured steps
move on at any upstream failure. A breaker per upstream address (consecutive failures, open
period, one half-open probe; ingot.gateway.breaker) makes a dead upstream an immediate
`UpstreamDown` instead of a connection attempt, and every send gets only what is left of the
request's deadline.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingot.gateway.assignment import FALLBACK, HEADER
from ingot.gateway.breaker import Breaker
from ingot.gateway.fallback import OTHER_ARM, PREVIOUS_CHAMPION, BreakerPolicy
from ingot.gateway.forward import forward
from ingot.gateway.routing import CHALLENGER, CHAMPION, RoutingTable, Upstream
from ingot.gateway.upstream import UpstreamDown
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.status import Code, ServingError

if TYPE_CHECKING:
    from ingot.gateway.choose import Chooser, GatewayTarget
    from ingot.serving.backend import PredictCall

UPSTREAM_FAILURES = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.INTERNAL, Code.RESOURCE_EXHAUSTED})
_FAILED_STATUSES = frozenset(code.name for code in UPSTREAM_FAILURES)  # a REST answer's status name


@dataclass(frozen=True)
class Step:
    """One upstream to try: how to get its target (signatures may need a call) and, for any step
    but the first, the reason its answer is degraded."""

    target: Callable[[], Awaitable[GatewayTarget]]
    reason: str | None
    any_failure: bool  # move on past this step at any upstream failure, not only when unreachable


class Breakers:
    """One breaker per upstream address, made on first use with the routing table's settings."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_upstream: dict[tuple[str, str, float, int], Breaker] = {}

    def get(self, upstream: Upstream, policy: BreakerPolicy) -> Breaker:
        key = (upstream.rest, upstream.grpc, policy.open_s, policy.failures)
        breaker = self._by_upstream.get(key)
        if breaker is None:
            breaker = self._by_upstream[key] = Breaker(failures=policy.failures, open_s=policy.open_s,
                                                       clock=self._clock)
        return breaker

    def states(self) -> dict[str, str]:
        return {grpc: b.state for (_, grpc, _, _), b in self._by_upstream.items()}


async def send(breakers: Breakers, policy: BreakerPolicy, target: GatewayTarget, call: PredictCall,
               deadline: float, request_id: str | None) -> tuple[Any, Any, str]:
    """forward() behind the upstream's breaker, with what is left of the deadline (a perf_counter
    time). An open breaker is UpstreamDown at once; a spent deadline is DEADLINE_EXCEEDED."""
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        raise ServingError(Code.DEADLINE_EXCEEDED, "Deadline exceeded: the request's deadline_ms is spent")
    breaker = breakers.get(target.client.upstream, policy)
    if not breaker.allow():
        raise UpstreamDown(f"{target.client.upstream.grpc}: circuit open (it failed {policy.failures} times in a "
                           f"row; probed again {policy.open_s:g} s after)")
    try:
        outcome = await forward(target, call, remaining, request_id)
    except UpstreamDown:
        breaker.failure()
        raise
    except ServingError as err:
        if err.code in UPSTREAM_FAILURES:
            breaker.failure()
        else:
            breaker.success()
        raise
    except BaseException:  # cancelled mid-probe: never leave the breaker waiting on a probe
        breaker.failure()
        raise
    if outcome[2] in _FAILED_STATUSES:  # a REST 5xx answer
        breaker.failure()
    else:
        breaker.success()
    return outcome


def steps(table: RoutingTable, chooser: Chooser, pool: Any, assigned: GatewayTarget) -> list[Step]:
    """The upstreams to try for one request, in order (pins get only their own)."""

    async def first() -> GatewayTarget:
        return assigned

    # A challenger's own errors stay its errors (A/B evidence); a champion's move on to the steps.
    found = [Step(first, None, any_failure=assigned.variant != CHALLENGER)]
    if assigned.how == HEADER:
        return found
    configured = table.resilience.fallback
    if assigned.variant == CHALLENGER:
        found.append(Step(lambda: chooser.fallback(table, assigned.spec), OTHER_ARM, any_failure=True))
    elif OTHER_ARM in configured and CHALLENGER in table.upstreams:
        challenger = table.upstreams[CHALLENGER]
        found.append(Step(lambda: _target(table, pool, challenger, CHALLENGER), OTHER_ARM, any_failure=True))
    if PREVIOUS_CHAMPION in configured and table.previous_champion is not None:
        previous = table.previous_champion
        found.append(Step(lambda: _target(table, pool, previous, CHAMPION), PREVIOUS_CHAMPION, any_failure=True))
    return found


async def _target(table: RoutingTable, pool: Any, upstream: Upstream, variant: str) -> GatewayTarget:
    """A fallback target on `upstream` (its signatures fetched, cached per version)."""
    from ingot.gateway.choose import GatewayTarget
    from ingot.gateway.forward import upstream_error

    client = pool.client(upstream)
    try:
        signatures = await client.signatures(table.model, upstream.version)
    except UpstreamDown:
        raise
    except Exception as err:  # noqa: BLE001 - the upstream's own error (e.g. version not loaded)
        raise upstream_error(err) from None
    return GatewayTarget(table.model, upstream.version, signatures, variant, FALLBACK, client,
                         ModelSpec(table.model, upstream.version))
