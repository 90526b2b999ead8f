"""`ingot predict` in process against the real server: one line per image, errors as one line
and a non-zero exit."""

from __future__ import annotations

import pytest

from ingot.cli.main import main
from tests.serving.support import MODEL, colour_images, free_port, png

pytestmark = pytest.mark.xdist_group("serving-conformance")  # shares the conformance server


@pytest.fixture
def images(tmp_path):
    paths = []
    for label in (1, 0):
        path = tmp_path / f"c{label}.png"
        path.write_bytes(png(colour_images([label], seed=41)[0]))
        paths.append(str(path))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but truncated")
    return paths, str(broken)


def test_prints_class_and_confidence_per_image_and_finds_the_only_model(conformance_server, images, capsys):
    good, _ = images
    assert main(["predict", "--server", conformance_server.rest_url, "--label", "stable", *good]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [(p, c) for p, c, _ in lines] == [(good[0], "green"), (good[1], "red")]


def test_a_bad_image_is_named_and_the_rest_still_answer(conformance_server, images, capsys):
    good, broken = images
    missing = good[0] + ".missing"
    code = main(["predict", "--server", conformance_server.rest_url, "--model", MODEL, "--version", "1",
                 good[0], broken, missing])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.strip().split("\t")[:2] == [good[0], "green"]
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2
    assert any(missing in e and "no such image file" in e for e in errors)
    assert any(broken in e and e.startswith("ingot: error:") for e in errors)


def test_server_errors_are_one_line_and_exit_1(conformance_server, images, capsys):
    good, _ = images
    assert main(["predict", "--server", conformance_server.rest_url, "--model", "unknown", good[0]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ingot: error: Servable not found for request: Latest(unknown)"]
    assert main(["predict", "--server", f"http://127.0.0.1:{free_port()}", "--model", MODEL, "--timeout", "2", good[0]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ingot: error: cannot reach")
