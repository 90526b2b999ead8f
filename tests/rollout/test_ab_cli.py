"""`ingot ab analyze`: the decision from counts, as text and JSON; bad input is one line."""

from __future__ import annotations

import json

import pytest

from ingot.cli.main import main


def test_ab_analyze_json_gives_the_known_vector(capsys):
    assert main(["ab", "analyze", "--champion", "1440/2000", "--challenger", "1340/2000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "rollback"
    assert out["likelihood_ratio"] == pytest.approx(65.2, abs=0.1)
    assert out["interval"][0] == pytest.approx(-0.094, abs=0.001)
    assert out["interval"][1] == pytest.approx(-0.006, abs=0.001)
    assert out["challenger"]["accuracy"] == pytest.approx(0.67)


def test_ab_analyze_text_and_policy_file(tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text("alpha: 0.05\ntau: 0.05\nmin_labels: 5000\n")
    assert main(["ab", "analyze", "--champion", "1440/2000", "--challenger", "1340/2000",
                 "--policy", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "decision:    continue" in out
    assert "5000 needed in each arm" in out


@pytest.mark.parametrize("argv, message", [
    (["--champion", "1440-2000", "--challenger", "1/2"], "CORRECT/TOTAL"),
    (["--champion", "3/2", "--challenger", "1/2"], "exceeds labelled total"),
    (["--champion", "1/2", "--challenger", "1/2", "--alpha", "2"], "alpha"),
])
def test_ab_analyze_bad_input_is_one_readable_line(argv, message, capsys):
    assert main(["ab", "analyze", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ingot: error:") and message in err and "\n" not in err
