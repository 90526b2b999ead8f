"""Assignment statistics over 10,000 simulated callers: unbiased, sticky, monotone, pinned, random."""

from __future__ import annotations

import math
import random

import pytest

from ingot.gateway.assignment import InvalidPin, assign, bucket, should_mirror
from ingot.gateway.routing import validate

CALLERS = [f"user-{i}" for i in range(10_000)]


def table(weight: float, mirror: float = 0, salt: str = "exp-1"):
    return validate({
        "model": "digits", "experiment": "exp-1", "salt": salt, "weights": {"challenger": weight}, "mirror": mirror,
        "upstreams": {"champion": {"rest": "http://a:8501", "grpc": "a:8500", "version": 1},
                      "challenger": {"rest": "http://b:8501", "grpc": "b:8500", "version": 2}},
    })


def within_binomial(count: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("weight", [10, 50, 90])
def test_sticky_share_matches_the_weight(weight: int) -> None:
    routes = table(weight)
    challengers = sum(assign(routes, {"x-ingot-caller": c}).variant == "challenger" for c in CALLERS)
    assert within_binomial(challengers, len(CALLERS), weight / 100), challengers


def test_buckets_are_uniform() -> None:
    from scipy.stats import chisquare

    counts = [0] * 10
    for caller in CALLERS:
        counts[bucket("exp-1", caller) // 1000] += 1
    assert chisquare(counts).pvalue > 1e-4


def test_a_caller_is_stable_and_only_moves_to_the_challenger_as_the_weight_grows() -> None:
    previous: set[str] = set()
    for weight in (0, 1, 5, 10, 25, 50, 75, 90, 99, 100):
        routes = table(weight)
        on_challenger = {c for c in CALLERS if assign(routes, {"x-ingot-caller": c}).variant == "challenger"}
        again = {c for c in CALLERS if assign(routes, {"x-ingot-caller": c}).variant == "challenger"}
        assert on_challenger == again  # stable for a fixed weight
        assert previous <= on_challenger  # nobody moves back to the champion
        previous = on_challenger
    assert len(previous) == len(CALLERS)


def test_another_salt_reshuffles_callers() -> None:
    a = {c for c in CALLERS if assign(table(50, salt="s1"), {"x-ingot-caller": c}).variant == "challenger"}
    b = {c for c in CALLERS if assign(table(50, salt="s2"), {"x-ingot-caller": c}).variant == "challenger"}
    assert within_binomial(len(a & b), len(CALLERS), 0.25)  # independent: about a quarter in both


def test_the_pin_wins_over_sticky_and_weight() -> None:
    for weight in (0, 100):
        for pin in ("champion", "challenger", " Challenger "):
            got = assign(table(weight), {"x-ingot-variant": pin, "x-ingot-caller": "user-1"})
            assert (got.variant, got.how) == (pin.strip().lower(), "header")
    with pytest.raises(InvalidPin, match="x-ingot-variant must be one of champion, challenger, got 'shadow'"):
        assign(table(10), {"x-ingot-variant": "shadow"})


def test_without_a_caller_key_each_request_is_split_at_random() -> None:
    rng = random.Random(7)
    routes = table(30)
    picks = [assign(routes, {}, rng) for _ in range(10_000)]
    assert {p.how for p in picks} == {"weight"}
    assert within_binomial(sum(p.variant == "challenger" for p in picks), 10_000, 0.3)
    assert [assign(table(0), {}, rng).variant for _ in range(100)] == ["champion"] * 100
    assert [assign(table(100), {}, rng).variant for _ in range(100)] == ["challenger"] * 100


def test_mirror_copies_that_share_of_champion_requests_only() -> None:
    rng = random.Random(3)
    routes = table(0, mirror=20)
    champion = assign(routes, {}, rng)
    mirrored = sum(should_mirror(routes, champion, rng) for _ in range(10_000))
    assert within_binomial(mirrored, 10_000, 0.2)
    to_challenger = assign(table(100, mirror=100), {}, rng)
    assert not should_mirror(table(100, mirror=100), to_challenger, rng)
    assert not any(should_mirror(table(0, mirror=0), champion, rng) for _ in range(1000))
