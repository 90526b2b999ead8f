"""`ingot data report`: the table, --json, and a refused dataset still shows its report."""

from __future__ import annotations

import argparse
import json

import pytest

from ingot.cli import data as data_cli
from ingot.errors import DataError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ingot")
    data_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_report_prints_a_table(mixed_folder, capsys):
    assert _run(["data", "report", str(mixed_folder), "--min-images-per-class", "2"]) == 0
    out = capsys.readouterr().out
    assert "Images    12 in 3 classes; imbalance ratio 1.00" in out
    assert any(line.split() == ["dog", "4", "33.3%"] for line in out.splitlines())
    assert any(line.split()[:4] == ["height", "6", "16", "9.0"] for line in out.splitlines())
    assert "broken.jpg" in out and "Converted to RGB  grayscale 2, palette 2, rgba 1" in out


def test_report_json_is_the_report_dict(mixed_folder, capsys):
    assert _run(["data", "report", str(mixed_folder), "--min-images-per-class", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["class_counts"] == {"cat": 4, "dog": 4, "fox": 4}
    assert payload["skipped_count"] == 1


def test_refused_dataset_prints_report_then_raises(write_folder, capsys):
    root = write_folder({"big": 6, "small": 2})
    with pytest.raises(DataError, match="class 'small' has 2"):
        _run(["data", "report", str(root)])
    out = capsys.readouterr().out
    assert any(line.split() == ["small", "2", "25.0%"] for line in out.splitlines())


def test_missing_path_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _run(["data", "report", str(tmp_path / "missing")])
