"""The triggers beside drift: "at least N new labelled production rows since the champion's
dataset" and labelled accuracy below the gate's floor, both through the one cooldown and
one-run-in-flight rule (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import update

from ingot.db import normalize_url, open_engine
from ingot.inference_log.schema import inference_log
from ingot.monitor.check import CheckSettings, run_check
from ingot.monitor.labels import labelled_rows_since
from ingot.monitor.triggers import RUNNING, SUCCEEDED, TriggerStore
from ingot.registry import Registry
from ingot.registry.datasets import link_dataset_version, record_dataset_version
from tests.monitor.conftest import make_champion, write_log
from tests.monitor.simulate import draw
from tests.monitor.test_monitor_cli import CARD


@dataclass
class RecordingLauncher:
    """Starts nothing: records the trigger as running, as a launcher that submitted a run would."""

    started: list[int] = field(default_factory=list)
    backend: str = "local"

    def start(self, store, trigger, recipe):
        self.started.append(trigger.id)
        return store.mark_running(trigger.id, run_id=f"run-{trigger.id}")

    def refresh(self, store, trigger):
        return trigger


@pytest.fixture
def url(database_url, tmp_path):
    make_champion(database_url, "digits", CARD, tmp_path / "repo" / "digits" / "1")
    return database_url


def _labelled(url: str, n: int, *, start: datetime, seed: int, accurate: bool = True) -> None:
    """n served rows with input hashes and feedback labels, one a second from `start`; about 85%
    correct (or 5% when not `accurate`), validation-like inputs (no drift)."""
    rng = np.random.default_rng(seed)
    batch = draw(n, rng)
    correct = rng.random(n) < (0.85 if accurate else 0.05)
    engine = open_engine(normalize_url(url))
    from ingot.evaluate.drift import input_statistics

    means, stds = input_statistics(batch.images)
    write_log(engine, "digits", batch.predicted, batch.confidence, means=means, stds=stds, correct=correct,
              start=start)
    with engine.begin() as conn:  # give every row an input hash, as the gateway logs it
        rows = conn.execute(inference_log.select().where(inference_log.c.input_sha256.is_(None))).all()
        for row in rows:
            conn.execute(update(inference_log).where(inference_log.c.id == row.id)
                         .values(input_sha256=f"{row.request_id:0<64}"[:64]))
    engine.dispose()


def _settings(url: str, launcher: RecordingLauncher, *, trigger: bool = True, **kwargs) -> CheckSettings:
    return CheckSettings(model="digits", registry_url=url, rows=2000, trigger=trigger, launcher=launcher,
                         cooldown=timedelta(hours=1), **kwargs)


def test_new_label_threshold_triggers_once_then_one_in_flight_then_cooldown(url):
    launcher = RecordingLauncher()
    start = datetime.now(UTC) - timedelta(hours=2)
    _labelled(url, 60, start=start, seed=1)
    below = run_check(_settings(url, launcher, new_labels=100))
    assert below.result.status != "drift", below.result.to_dict()
    assert below.new_labels.count == 60 and not below.new_labels.reached and not below.triggering
    assert below.trigger is None and launcher.started == []

    _labelled(url, 60, start=start + timedelta(minutes=5), seed=2)
    reached = run_check(_settings(url, launcher, new_labels=100))
    assert reached.new_labels.count == 120 and reached.triggering
    assert reached.trigger is not None and reached.trigger.state == RUNNING
    assert "120 new labelled production rows (threshold 100)" in reached.trigger.reason
    assert "trained on no production data" in reached.trigger.reason
    assert reached.trigger.statistics["new_labels"]["count"] == 120
    assert reached.trigger.kinds == ["new labels"]  # what fired it, recorded for the rollout it leads to

    again = run_check(_settings(url, launcher, new_labels=100))
    assert again.trigger is None and "at most one run in flight" in again.refusal
    with Registry.from_url(url) as registry:
        TriggerStore(registry.engine).finish(reached.trigger.id, SUCCEEDED, "done")
    cooling = run_check(_settings(url, launcher, new_labels=100))
    assert cooling.trigger is None and cooling.refusal.startswith("cooling down until")
    assert launcher.started == [reached.trigger.id]


def test_only_rows_after_the_champions_dataset_window_count(url):
    start = datetime.now(UTC) - timedelta(hours=2)
    _labelled(url, 40, start=start, seed=3)
    window_end = start + timedelta(minutes=30)
    _labelled(url, 25, start=window_end + timedelta(seconds=1), seed=4)
    with Registry.from_url(url) as registry:
        dataset = record_dataset_version(registry, model="digits", content_hash="a" * 64, uri="/data/v1",
                                         parent_hash="b" * 64, window_start=None, window_end=window_end,
                                         counts={"train": 1}, sources={})
        link_dataset_version(registry, "digits", 1, dataset.id)
        assert labelled_rows_since(registry.engine, "digits", None) == 65
    outcome = run_check(_settings(url, RecordingLauncher(), new_labels=30, trigger=False))
    assert outcome.new_labels.count == 25 and outcome.new_labels.dataset_version == dataset.id
    assert not outcome.triggering and outcome.trigger is None


def test_labelled_accuracy_credibly_below_the_floor_triggers_with_its_interval(url):
    launcher = RecordingLauncher()
    _labelled(url, 400, start=datetime.now(UTC) - timedelta(hours=1), seed=5, accurate=False)
    outcome = run_check(_settings(url, launcher))
    assert outcome.result.below_floor and outcome.result.labelled_interval[1] < 0.5
    assert outcome.trigger is not None and launcher.started == [outcome.trigger.id]
    assert "labelled accuracy below the gate's floor (95% interval [" in outcome.trigger.reason
