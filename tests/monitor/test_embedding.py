"""The embedding MMD² test: known cases, the permutation p-value's size, the captured-input
directory and the check's place in the Bonferroni family."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC

import numpy as np
import pytest

from ingot.errors import ConfigError
from ingot.monitor.embedding import CaptureStoreInputs, EmbeddingWindow, embedding_window, mmd_test
from ingot.monitor.statistics import DRIFT, check_window
from tests.monitor.simulate import baseline, draw

BASELINE = baseline()


def test_same_distribution_gives_a_large_p_value_and_a_shifted_mean_a_tiny_one():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(300, 16))
    same = mmd_test(reference, rng.normal(size=(300, 16)), permutations=200)
    shifted = mmd_test(reference, rng.normal(loc=0.5, size=(300, 16)), permutations=200)
    assert same.p_value > 0.05
    assert shifted.p_value == pytest.approx(1 / 201)
    assert shifted.statistic > 5 * same.statistic
    assert same.bandwidth > 0 and (same.reference_rows, same.window_rows) == (300, 300)


def test_identical_samples_have_zero_statistic_and_p_value_one():
    x = np.random.default_rng(1).normal(size=(50, 4))
    result = mmd_test(x, x, permutations=50)
    assert result.statistic == pytest.approx(0.0, abs=1e-6)
    assert result.p_value == 1.0


def test_the_permutation_p_value_has_its_size_on_stable_windows():
    """False alarms at alpha 0.05 over 200 stable pairs (binomial sd 1.5%): at most 5% plus slack 2 sd."""
    alarms = 0
    for seed in range(200):
        rng = np.random.default_rng(10_000 + seed)
        result = mmd_test(rng.normal(size=(60, 8)), rng.normal(size=(60, 8)), permutations=99, seed=seed)
        alarms += result.p_value <= 0.05
    assert alarms <= 16, f"{alarms} false alarms in 200 stable windows"
    assert alarms >= 2, "a p-value that never falls below alpha is not a test"


def test_the_test_is_seeded_and_subsamples_to_max_rows():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(120, 3)), rng.normal(size=(90, 3))
    assert mmd_test(x, y, seed=5, permutations=50) == mmd_test(x, y, seed=5, permutations=50)
    assert mmd_test(x, y, max_rows=40, permutations=10).reference_rows == 40


def test_mismatched_or_tiny_samples_are_refused():
    with pytest.raises(ConfigError, match="one d"):
        mmd_test(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ConfigError, match="at least 2 rows"):
        mmd_test(np.zeros((1, 3)), np.zeros((5, 3)))


def _capture(root, model: str, payload: bytes, suffix: str = ".png", mtime: float | None = None):
    digest = hashlib.sha256(payload).hexdigest()
    path = root / model / digest[:2] / f"{digest}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_local_captured_inputs_read_the_content_addressed_layout(tmp_path):
    from datetime import datetime

    old = _capture(tmp_path, "digits", b"old", mtime=1_000_000)
    _capture(tmp_path, "digits", b"new", mtime=2_000_000)
    _capture(tmp_path, "digits", b"not an image", suffix=".txt")
    _capture(tmp_path, "other", b"elsewhere")
    (old.parent / "stray.png").write_bytes(b"x")           # not content-addressed: ignored
    store = CaptureStoreInputs(tmp_path)
    since = datetime.fromtimestamp(1_500_000, tz=UTC)
    assert store.sample("digits", since, None, 10) == [b"new"]
    assert sorted(store.sample("digits", None, None, 10)) == [b"new", b"old"]
    assert store.sample("digits", None, None, 1) == [b"new"]
    assert store.sample("missing", None, None, 10) == []


def test_without_captured_inputs_the_check_is_skipped_with_a_note(tmp_path):
    reference = np.zeros((10, 4))
    embed = lambda images: np.zeros((len(images), 4))  # noqa: E731
    none = embedding_window(reference, None, embed, "digits", None, None)
    empty = embedding_window(reference, CaptureStoreInputs(tmp_path), embed, "digits", None, None)
    assert "no captured inputs configured" in str(none)
    assert "no captured inputs in the window" in str(empty)
    result = check_window(BASELINE, draw(500, np.random.default_rng(3)).window(), embeddings=empty)
    assert any("no captured inputs" in note for note in result.notes)
    assert "embedding_mmd" not in [t.name for t in result.tests]


def test_embedding_drift_joins_the_bonferroni_family():
    rng = np.random.default_rng(4)
    window = draw(500, np.random.default_rng(5)).window()
    stable = check_window(BASELINE, window, embeddings=EmbeddingWindow(rng.normal(size=(400, 8)),
                                                                       rng.normal(size=(400, 8))))
    shifted = check_window(BASELINE, window, embeddings=EmbeddingWindow(rng.normal(size=(400, 8)),
                                                                        rng.normal(0.4, size=(400, 8))))
    pvalue_tests = [t for t in stable.tests if t.kind == "p-value"]
    deciding = [t for t in pvalue_tests if not t.advisory]
    assert "embedding_mmd" in [t.name for t in deciding]
    # m counts the deciding tests only; advisory ones are judged at the same threshold
    assert all(t.threshold == pytest.approx(0.01 / len(deciding)) for t in pvalue_tests)
    assert "embedding_mmd" not in stable.drifted
    assert shifted.status == DRIFT and "embedding_mmd" in shifted.drifted


def test_the_report_plots_both_samples_in_two_dimensions(tmp_path):
    from ingot.monitor.check import CheckOutcome
    from ingot.monitor.embedding import project_2d
    from ingot.monitor.report import write_report

    rng = np.random.default_rng(6)
    samples = EmbeddingWindow(rng.normal(size=(200, 8)), rng.normal(2.0, size=(200, 8)))
    reference, window = project_2d(samples.reference, samples.window)
    assert reference.shape == (200, 2) and window.shape == (200, 2)
    assert abs(reference[:, 0].mean() - window[:, 0].mean()) > 3  # the shift lies along the first axis
    live = draw(500, np.random.default_rng(7)).window()
    result = check_window(BASELINE, live, embeddings=samples)
    path = write_report(CheckOutcome("digits", 1, result, live, BASELINE, embeddings=samples), tmp_path / "r.html")
    html = path.read_text()
    assert "Embeddings (PCA of the pooled samples)" in html and "embedding_mmd" in html


def test_advisory_tests_are_computed_and_reported_but_never_decide():
    from ingot.monitor.check import CheckOutcome
    from ingot.monitor.report import format_text, render_html
    from ingot.monitor.statistics import ADVISORY_DRIFT, NO_DRIFT

    rng = np.random.default_rng(8)
    live = draw(500, np.random.default_rng(9)).window()
    samples = EmbeddingWindow(rng.normal(size=(400, 8)), rng.normal(0.6, size=(400, 8)))
    both = {"embedding_mmd", "embedding_classifier"}
    aside = check_window(BASELINE, live, embeddings=samples, advisory=both)
    deciding = check_window(BASELINE, live, embeddings=samples, advisory=())
    assert deciding.status == DRIFT and set(deciding.drifted) >= both
    assert aside.status == NO_DRIFT and aside.drifted == []
    flagged = {t.name: t for t in aside.tests if t.name in both}
    assert {t.verdict for t in flagged.values()} == {ADVISORY_DRIFT} and all(t.advisory for t in flagged.values())
    # m counts the deciding tests only: two fewer than with both embedding tests deciding
    m_aside = sum(t.kind == "p-value" and not t.advisory for t in aside.tests)
    m_deciding = sum(t.kind == "p-value" and not t.advisory for t in deciding.tests)
    assert m_aside == m_deciding - 2
    assert all(t.threshold == pytest.approx(0.01 / m_aside) for t in flagged.values())
    assert aside.to_dict()["tests"][[t.name for t in aside.tests].index("embedding_mmd")]["advisory"] is True
    outcome = CheckOutcome("digits", 1, aside, live, BASELINE, embeddings=samples)
    assert "advisory, reported but never deciding: embedding_mmd, embedding_classifier" in format_text(outcome)
    assert "<td>drift (advisory)</td><td>advisory</td>" in render_html(outcome)


def test_the_default_advisory_tests_do_not_decide():
    from ingot.monitor.statistics import ADVISORY_TESTS

    rng = np.random.default_rng(10)
    live = draw(500, np.random.default_rng(11)).window()
    result = check_window(BASELINE, live, embeddings=EmbeddingWindow(rng.normal(size=(400, 8)),
                                                                     rng.normal(0.6, size=(400, 8))))
    for test in result.tests:
        assert test.advisory == (test.name in ADVISORY_TESTS)
    assert not set(result.drifted) & ADVISORY_TESTS


def test_the_history_shows_the_statistics_rise_when_the_window_shifts_late(tmp_path):
    from ingot.monitor.check import CheckOutcome
    from ingot.monitor.embedding import embedding_history
    from ingot.monitor.report import write_report

    rng = np.random.default_rng(12)
    window = np.vstack([rng.normal(size=(300, 8)), rng.normal(1.0, size=(300, 8))])
    times = 1_700_000_000.0 + np.arange(600)[::-1]           # newest first, as the store returns them
    samples = EmbeddingWindow(rng.normal(size=(500, 8)), window[::-1], times=times)
    points = embedding_history(samples)
    assert len(points) == 8 and [p.until for p in points] == sorted(p.until for p in points)
    assert sum(p.rows for p in points) == 600
    early, late = points[:3], points[-3:]
    assert max(p.mmd2 for p in early) < min(p.mmd2 for p in late)
    assert max(p.auc for p in early) < 0.7 < min(p.auc for p in late)
    assert embedding_history(EmbeddingWindow(samples.reference, samples.window)) == []   # no capture times
    assert embedding_history(EmbeddingWindow(samples.reference, window[:60], times=times[:60])) == []
    live = draw(500, np.random.default_rng(13)).window()
    result = check_window(BASELINE, live, embeddings=samples)
    html = write_report(CheckOutcome("digits", 1, result, live, BASELINE, embeddings=samples),
                        tmp_path / "r.html").read_text()
    assert "Embedding statistics over time" in html
