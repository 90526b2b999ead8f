"""Which variant answers a predict request, and its upstream, version and signatures.

A `versions/N` or `labels/L` request goes to the variant serving N or L; anything else is
assigned (pin header, sticky caller key, weighted random: ingot.gateway.assignment). A challenger
that cannot be reached hands its request to the champion (assignment `fallback`); a champion
that cannot be reached is a 503.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ingot.gateway.assignment import FALLBACK, HEADER, Assignment, InvalidPin, assign
from ingot.gateway.forward import down, upstream_error
from ingot.gateway.metrics import GatewayMetrics
from ingot.gateway.routing import CHALLENGER, CHAMPION, RoutingTable
from ingot.gateway.upstream import UpstreamClient, UpstreamDown, UpstreamPool
from ingot.protocol.model_spec import ModelSpec
from ingot.protocol.status import invalid_argument, not_found
from ingot.serving.backend import RequestContext

LABEL_ALIASES = {CHAMPION: CHAMPION, CHALLENGER: CHALLENGER}


@dataclass(frozen=True)
class GatewayTarget:
    """The variant chosen for one request: its upstream, version and signatures."""

    name: str
    version: int | None
    signatures: Mapping[str, Any]
    variant: str
    how: str
    client: UpstreamClient
    spec: ModelSpec  # what to ask the upstream for (pinned to the variant's version)

    def signature(self, name: str, *, rest: bool = False) -> Any:
        from ingot.protocol.tensors import find_signature

        return find_signature(self.signatures, name, rest=rest)


def check_model(table: RoutingTable, spec: ModelSpec) -> None:
    if spec.name != table.model:
        what = (f"Specific({spec.name}, {spec.version})" if spec.version is not None
                else f"Latest({spec.name})")
        raise not_found(f"Servable not found for request: {what}")


class Chooser:
    def __init__(self, pool: UpstreamPool, metrics: GatewayMetrics, rng: random.Random) -> None:
        self.pool = pool
        self.metrics = metrics
        self.rng = rng

    async def choose(self, table: RoutingTable, ctx: RequestContext,
                     spec: ModelSpec) -> tuple[str, str, ModelSpec] | None:
        """(variant, assignment, the spec to send upstream: the variant's own version), or None
        for a version or label that neither variant serves."""
        if spec.version is not None:
            variant = table.variant_for_version(spec.version)
            return None if variant is None else (variant, HEADER, spec)
        if spec.label is not None:
            alias = LABEL_ALIASES.get(spec.label)
            if alias is not None and alias in table.upstreams:
                return alias, HEADER, ModelSpec(spec.name, table.upstreams[alias].version)
            for variant in (CHAMPION, CHALLENGER):
                upstream = table.upstreams.get(variant)
                if upstream is None:
                    continue
                try:
                    number = await self.pool.client(upstream).label_version(table.model, spec.label)
                except UpstreamDown:
                    continue
                if number == upstream.version:
                    return variant, HEADER, ModelSpec(spec.name, number)
            return None
        try:
            chosen: Assignment = assign(table, ctx.headers, self.rng)
        except InvalidPin as err:
            raise invalid_argument(str(err)) from None
        if chosen.variant == CHALLENGER and table.challenger is None:
            self.metrics.fallbacks.labels(table.model).inc()
            return CHAMPION, FALLBACK, ModelSpec(spec.name, table.champion.version)
        return chosen.variant, chosen.how, ModelSpec(spec.name, table.upstreams[chosen.variant].version)

    async def target(self, table: RoutingTable, variant: str, how: str, spec: ModelSpec) -> GatewayTarget:
        """The chosen variant with its signatures fetched (cached); the champion instead when an
        assigned challenger cannot be reached."""
        upstream = table.upstreams[variant]
        client = self.pool.client(upstream)
        may_fall_back = variant == CHALLENGER and how != HEADER
        if may_fall_back and client.looks_down:
            return await self.fallback(table, spec)
        try:
            signatures = await client.signatures(table.model, upstream.version)
        except UpstreamDown as err:
            if may_fall_back:
                return await self.fallback(table, spec)
            raise down(variant, err) from None
        except Exception as err:  # noqa: BLE001 - the upstream's own error (e.g. version not loaded)
            raise upstream_error(err) from None
        return GatewayTarget(table.model, upstream.version, signatures, variant, how, client,
                             ModelSpec(table.model, upstream.version))

    async def fallback(self, table: RoutingTable, spec: ModelSpec) -> GatewayTarget:
        self.metrics.fallbacks.labels(table.model).inc()
        champion = ModelSpec(spec.name, table.champion.version)
        return await self.target(table, CHAMPION, FALLBACK, champion)
