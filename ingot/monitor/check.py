"""One monitor check of a model: its champion's baseline, a window of the inference log, the
tests, and, when asked and warranted, a retraining trigger. What `ingot monitor check` runs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingot.errors import IngotError, NotFoundError
from ingot.evaluate.drift import NO_BASELINE_NOTE, DriftBaseline
from ingot.monitor.embedding import CapturedInputs, EmbedderFor, EmbeddingWindow
from ingot.monitor.labels import NewLabels, new_labels
from ingot.monitor.launch import Launcher, Recipe
from ingot.monitor.statistics import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_LABELS,
    DEFAULT_MIN_ROWS,
    DRIFT,
    CheckResult,
    Window,
    check_window,
)
from ingot.monitor.triggers import ACCURACY_KIND, DEFAULT_COOLDOWN, DRIFT_KIND, NEW_LABELS_KIND, Refusal, Trigger

if TYPE_CHECKING:
    from ingot.retrain.production import ProductionData


@dataclass
class CheckSettings:
    model: str
    registry_url: str | None = None        # registry (champion, card) and the trigger table
    log_url: str | None = None             # the inference log; default: the registry's database
    rows: int | None = None
    since: timedelta | None = None
    variant: str = "champion"
    evidence_only: bool = True             # only rows a randomised assignment produced (not pins, not untrusted keys)
    alpha: float = DEFAULT_ALPHA
    min_rows: int = DEFAULT_MIN_ROWS
    min_labels: int = DEFAULT_MIN_LABELS
    trigger: bool = False
    cooldown: timedelta = DEFAULT_COOLDOWN
    dataset_uri: str = ""
    model_repository: str | None = None
    kfp_host: str | None = None            # None: trigger locally
    kfp_experiment: str | None = None
    kfp_namespace: str | None = None
    kfp_service_account: str | None = None
    image: str | None = None
    work_dir: Path | None = None           # local runs' logs and outputs
    launcher: Launcher | None = None       # starts triggered runs (the CLI hands one in from the settings above)
    captured: CapturedInputs | None = None  # the gateway's input capture (embedding drift); None: test skipped
    embedder: EmbedderFor | None = None    # champion version -> embeds captured images (serving_embedding)
    new_labels: int | None = None          # trigger on at least this many new labelled production rows
    production: ProductionData | None = None  # local triggered runs train on base + these rows


@dataclass
class CheckOutcome:
    model: str
    champion_version: int | None
    result: CheckResult
    window: Window
    baseline: DriftBaseline | None
    trigger: Trigger | None = None
    refusal: str | None = None
    trigger_error: str | None = None
    notes: list[str] = field(default_factory=list)
    embeddings: EmbeddingWindow | None = None  # the embedding test's two samples, for the report's plot
    new_labels: NewLabels | None = None  # the new-data trigger's count, when asked for

    @property
    def triggering(self) -> bool:
        """A trigger condition holds: drift, accuracy below the floor, or enough new labels."""
        return self.result.status == DRIFT or (self.new_labels is not None and self.new_labels.reached)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "champion_version": self.champion_version, "status": self.result.status,
            "result": self.result.to_dict(), "window": self.window.to_dict(),
            "trigger": self.trigger.to_dict() if self.trigger else None, "refusal": self.refusal,
            "trigger_error": self.trigger_error,
            "new_labels": self.new_labels.to_dict() if self.new_labels else None,
        }


def champion_card(registry: Any, model: str) -> tuple[int, dict[str, Any]]:
    """(version, model card) of the model's champion, read from its published artifact."""
    from ingot.repository import read_model_card

    champion = registry.champion(model)
    if champion is None or champion.artifact_uri is None:
        raise NotFoundError(f"model {model!r} has no champion in the registry at {registry.url}; "
                            "the monitor compares live traffic with the champion's model card")
    return int(champion.version), read_model_card(champion.artifact_uri)


def run_check(settings: CheckSettings) -> CheckOutcome:
    """Read, test and (with `settings.trigger`) trigger; never triggers on insufficient data."""
    from ingot.db import default_url
    from ingot.inference_log.store import InferenceLogStore
    from ingot.monitor.triggers import TriggerStore
    from ingot.monitor.window import read_window
    from ingot.registry import Registry

    settings.registry_url = settings.registry_url or default_url()
    with Registry.from_url(settings.registry_url) as registry:
        version, card = champion_card(registry, settings.model)
        baseline = DriftBaseline.from_card(card)
        notes = baseline.notes if baseline else [NO_BASELINE_NOTE]
        num_classes = len(card.get("class_names") or (baseline.class_names if baseline else ()))
        # The log lives in the registry's database unless told otherwise (--log-url, $INGOT_LOG_URL).
        with InferenceLogStore.from_url(settings.log_url or settings.registry_url) as log:
            window = read_window(log.engine, settings.model, num_classes, rows=settings.rows, since=settings.since,
                                 variant=settings.variant, model_version=version,
                                 evidence_only=settings.evidence_only)
            fresh = (new_labels(registry, log.engine, settings.model, version, settings.new_labels)
                     if settings.new_labels else None)
        floor = ((card.get("gate") or {}).get("thresholds") or {}).get("min_accuracy")
        embeddings = _embeddings(settings, registry, version, card)
        result = check_window(baseline, window, alpha=settings.alpha, min_rows=settings.min_rows,
                              min_labels=settings.min_labels, accuracy_floor=floor, notes=notes,
                              embeddings=embeddings)
        outcome = CheckOutcome(settings.model, version, result, window, baseline,
                               embeddings=embeddings if isinstance(embeddings, EmbeddingWindow) else None,
                               new_labels=fresh)
        if settings.trigger and outcome.triggering:
            _trigger(settings, registry, TriggerStore(registry.engine), card, outcome)
        return outcome


def _embeddings(settings: CheckSettings, registry: Any, version: int, card: dict[str, Any]) -> Any:
    """The embedding check's two samples, or the note saying why it is skipped."""
    from datetime import UTC, datetime

    from ingot.monitor.embedding import embedding_window, load_reference

    if settings.captured is None or settings.embedder is None:
        return "embedding_mmd: no captured inputs configured (--capture-url), embedding drift not tested"
    champion = registry.champion(settings.model)
    reference = load_reference(champion.artifact_uri, card) if champion and champion.artifact_uri else None
    until = datetime.now(UTC)
    since = until - settings.since if settings.since is not None else None
    return embedding_window(reference, settings.captured, settings.embedder(version), settings.model, since, until)


def _finite(value: Any) -> Any:
    """JSON the database accepts: PostgreSQL's JSONB has no NaN or infinity (they become null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def reason_of(result: CheckResult, fresh: NewLabels | None = None) -> str:
    parts = []
    if result.drifted:
        parts.append("drift in " + ", ".join(result.drifted))
    if result.below_floor:
        low, high = result.labelled_interval or (float("nan"), float("nan"))
        parts.append(f"labelled accuracy below the gate's floor (95% interval [{low:.3f}, {high:.3f}])")
    if fresh is not None and fresh.reached:
        parts.append(fresh.reason())
    return "; ".join(parts) or result.status


def _trigger(settings: CheckSettings, registry: Any, store: Any, card: dict[str, Any], outcome: CheckOutcome) -> None:
    launcher = settings.launcher
    if launcher is None:
        outcome.trigger_error = "no launcher was given to start retraining runs with"
        return
    flying = store.in_flight(settings.model)
    if flying is not None:
        launcher.refresh(store, flying)
    try:
        recipe = Recipe.from_card(card)
    except IngotError as err:
        outcome.trigger_error = str(err)
        return
    kinds = [kind for kind, fired in ((DRIFT_KIND, bool(outcome.result.drifted)),
                                      (ACCURACY_KIND, outcome.result.below_floor),
                                      (NEW_LABELS_KIND, bool(outcome.new_labels and outcome.new_labels.reached)))
             if fired]
    statistics = _finite({"kinds": kinds, "window": outcome.window.to_dict(),
                          "tests": [t.to_dict() for t in outcome.result.tests],
                          "champion_version": outcome.champion_version,
                          "new_labels": outcome.new_labels.to_dict() if outcome.new_labels else None,
                          "training_data": (settings.production.describe() if settings.production
                                            and launcher.backend == "local" else "the recipe's dataset")})
    claimed = store.claim(settings.model, reason=reason_of(outcome.result, outcome.new_labels), statistics=statistics,
                          backend=launcher.backend, cooldown=settings.cooldown)
    if isinstance(claimed, Refusal):
        outcome.refusal = claimed.reason
        return
    try:
        outcome.trigger = launcher.start(store, claimed, recipe)
    except IngotError as err:
        outcome.trigger_error = str(err)
