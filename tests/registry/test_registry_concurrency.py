"""Racing writers (separate engines, like separate pipeline pods) never create duplicates."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ingot.errors import ModelError
from ingot.registry import Registry, Stage
from tests.registry.helpers import BLESSED, ok, publish

RACERS = 6


def race(url: str, work: Callable[[Registry, int], Any]) -> list[Any]:
    """Run `work(registry, i)` in RACERS threads, each with its own Registry, released together."""
    registries = [Registry.from_url(url) for _ in range(RACERS)]
    barrier = threading.Barrier(RACERS)
    results: list[Any] = [None] * RACERS

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(registries[i], i)
        except Exception as err:  # noqa: BLE001 - the test inspects it
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for registry in registries:
        registry.close()
    return results


def register(registry: Registry, name: str, version: int, sha: str) -> Any:
    return registry.register_version(
        name, version=version, artifact_uri=f"/repo/{name}/{version}", model_sha256=sha, gate=BLESSED,
        pipeline_run_id="run-1",
    )


def test_racing_retries_of_one_registration_create_exactly_one_version(registry: Registry, registry_url: str) -> None:
    results = race(registry_url, lambda r, i: register(r, "digits", 1, "a" * 64))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({r.id for r in results}) == 1
    assert [v.version for v in registry.list_versions("digits")] == [1]
    assert len(registry.list_models()) == 1


def test_racing_different_artifacts_for_one_version_leave_one_winner(registry: Registry, registry_url: str) -> None:
    results = race(registry_url, lambda r, i: register(r, "digits", 1, f"{i + 1:064x}"))
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1 and len(losers) == RACERS - 1
    assert all(isinstance(e, ModelError) and "digits:1 is already registered" in str(e) for e in losers)
    assert registry.get_version("digits", 1).model_sha256 == winners[0].model_sha256


def test_racing_new_versions_of_a_new_model_all_land(registry: Registry, registry_url: str) -> None:
    results = race(registry_url, lambda r, i: register(r, "fresh", i + 1, f"{i + 1:064x}"))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(v.version for v in registry.list_versions("fresh")) == list(range(1, RACERS + 1))
    assert [s.name for s in registry.list_models()] == ["fresh"]


def test_racing_rejections_of_one_run_are_recorded_once(registry: Registry, registry_url: str) -> None:
    results = race(registry_url, lambda r, i: r.record_rejection("digits", reasons=["weak"], pipeline_run_id="run-1"))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({r.id for r in results}) == 1
    assert registry.list_models()[0].rejections == 1


def test_racing_verifications_crown_exactly_one_champion(registry: Registry, registry_url: str) -> None:
    for version in range(1, RACERS + 1):
        publish(registry, "digits", version, ready=False)
    results = race(registry_url, lambda r, i: r.mark_ready("digits", i + 1, verify=ok))
    assert not [r for r in results if isinstance(r, Exception)], results
    stages = sorted(registry.get_version("digits", v).stage.value for v in range(1, RACERS + 1))
    assert stages == ["candidate"] * (RACERS - 1) + ["champion"]
    champion = registry.champion("digits")
    for version in range(1, RACERS + 1):
        [event] = registry.events("digits", version)
        expected = Stage.CHAMPION if version == champion.version else Stage.CANDIDATE
        assert event.to_stage is expected


def test_racing_promotions_keep_one_champion_and_a_consistent_history(registry: Registry, registry_url: str) -> None:
    publish(registry, "digits", 1)
    for version in range(2, RACERS + 2):
        publish(registry, "digits", version, gate=None)
        registry.transition("digits", version, "archived", reason="old", actor="setup")
    results = race(registry_url, lambda r, i: r.transition("digits", i + 2, "champion", reason=f"rollback {i}", actor="ops"))
    assert not [r for r in results if isinstance(r, Exception)], results
    champions = [v for v in registry.list_versions("digits") if v.stage is Stage.CHAMPION]
    assert len(champions) == 1
    # every promotion archived the champion it replaced: the events form one chain
    promotions = [e for v in range(1, RACERS + 2) for e in registry.events("digits", v) if e.to_stage is Stage.CHAMPION]
    demotions = [e for v in range(1, RACERS + 2) for e in registry.events("digits", v)
                 if e.from_stage is Stage.CHAMPION and e.to_stage is Stage.ARCHIVED]
    assert len(promotions) == RACERS + 1 and len(demotions) == RACERS
