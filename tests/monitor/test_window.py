"""Windows aggregated in SQL equal the same rows binned in Python, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import create_engine

from ingot.db import normalize_url, open_engine
from ingot.errors import ConfigError
from ingot.evaluate.drift import input_statistics
from ingot.monitor.statistics import Window
from ingot.monitor.window import parse_duration, read_window
from tests.monitor.conftest import write_log
from tests.monitor.simulate import NUM_CLASSES, draw


@pytest.fixture
def engine(database_url):
    engine = open_engine(normalize_url(database_url))
    yield engine
    engine.dispose()


def test_a_row_window_counts_exactly_what_python_bins(engine):
    old = draw(300, np.random.default_rng(1), prior=[1, 0, 0, 0, 0])
    new = draw(400, np.random.default_rng(2))
    means, stds = input_statistics(new.images)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    write_log(engine, "digits", old.predicted, old.confidence, start=base)
    write_log(engine, "digits", new.predicted, new.confidence, means=means, stds=stds,
              correct=new.predicted == new.labels, start=base + timedelta(hours=1))
    # Noise the window must ignore: errors, shadow copies, another model, another version.
    write_log(engine, "digits", [0] * 20, [0.5] * 20, status="UNAVAILABLE", start=base + timedelta(hours=2))
    write_log(engine, "digits", [4] * 30, [0.99] * 30, variant="shadow", start=base + timedelta(hours=2))
    write_log(engine, "other", [3] * 30, [0.99] * 30, start=base + timedelta(hours=2))
    write_log(engine, "digits", [2] * 30, [0.99] * 30, version=2, start=base + timedelta(hours=2))

    window = read_window(engine, "digits", NUM_CLASSES, rows=400, model_version=1)
    expected = Window.from_values(new.predicted, new.confidence, NUM_CLASSES, input_means=means, input_stds=stds,
                                  correct=new.predicted == new.labels)
    assert window.rows == 400
    assert window.class_counts == expected.class_counts
    assert window.confidence_counts == expected.confidence_counts
    assert window.input_mean_counts == expected.input_mean_counts
    assert window.input_std_counts == expected.input_std_counts
    assert (window.labelled, window.correct) == (expected.labelled, expected.correct)
    assert window.start.startswith("2026-01-01T01:00:00")

    everything = read_window(engine, "digits", NUM_CLASSES, rows=10_000, model_version=1)
    assert everything.rows == 700 and everything.class_counts[0] >= 300
    assert everything.input_mean_counts == expected.input_mean_counts  # old rows logged no pixels


def test_a_time_window_takes_the_rows_since_the_cutoff(engine):
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    write_log(engine, "digits", [0] * 50, [0.9] * 50, start=now - timedelta(hours=10), step=timedelta(minutes=1))
    write_log(engine, "digits", [1] * 70, [0.6] * 70, start=now - timedelta(hours=2), step=timedelta(minutes=1))
    window = read_window(engine, "digits", NUM_CLASSES, since=parse_duration("3h"), now=now)
    assert window.rows == 70 and window.class_counts == [0, 70, 0, 0, 0]
    assert window.confidence_counts[60] == 70 and window.input_mean_counts is None
    empty = read_window(engine, "digits", NUM_CLASSES, since=timedelta(minutes=1), now=now + timedelta(days=1))
    assert empty.rows == 0 and empty.start is None


def test_class_ids_beyond_the_card_are_refused(engine):
    write_log(engine, "digits", [7], [0.9])
    with pytest.raises(ConfigError, match="class id 7"):
        read_window(engine, "digits", NUM_CLASSES, rows=10)


@pytest.mark.parametrize("text, expected", [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)),
                                            ("6h", timedelta(hours=6)), ("1.5d", timedelta(days=1.5)),
                                            ("2w", timedelta(weeks=2))])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "6", "h", "-1h", "0m", "3y"])
def test_parse_duration_refuses_nonsense(text):
    with pytest.raises(ConfigError, match="expected a positive number and a unit"):
        parse_duration(text)


def test_exactly_one_of_rows_or_since():
    engine = create_engine("sqlite://")
    with pytest.raises(ConfigError, match="exactly one"):
        read_window(engine, "m", 2)
    with pytest.raises(ConfigError, match="exactly one"):
        read_window(engine, "m", 2, rows=5, since=timedelta(hours=1))


def test_by_default_the_window_reads_only_evidence_rows(engine):
    """Pinned requests and sticky keys a caller picks are logged, but a caller choosing them must not
    steer drift (or trigger a retraining): they count only with evidence_only=False (--all-rows)."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    write_log(engine, "digits", [1] * 50, [0.9] * 50, correct=[True] * 50, start=base)
    write_log(engine, "digits", [3] * 40, [0.2] * 40, correct=[False] * 40, assignment="header",
              start=base + timedelta(hours=1))
    write_log(engine, "digits", [3] * 30, [0.2] * 30, assignment="sticky", start=base + timedelta(hours=1))
    write_log(engine, "digits", [2] * 20, [0.8] * 20, assignment="sticky", evidence=True,  # a trusted key
              start=base + timedelta(hours=1))
    window = read_window(engine, "digits", NUM_CLASSES, rows=1000)
    assert window.rows == 70 and window.class_counts[3] == 0 and window.class_counts[2] == 20
    assert (window.labelled, window.correct) == (50, 50)
    everything = read_window(engine, "digits", NUM_CLASSES, rows=1000, evidence_only=False)
    assert everything.rows == 140 and everything.class_counts[3] == 70
    assert (everything.labelled, everything.correct) == (90, 50)
