"""The lint and type-check set-up stays honest: mypy checks exactly the packages that claim typing."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_checks_exactly_the_packages_with_a_py_typed_marker():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    claimed = {str(marker.parent.relative_to(ROOT)) for marker in (ROOT / "ingot").rglob("py.typed")}
    assert set(config["files"]) == claimed


def test_ci_runs_lint_typecheck_and_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    steps = [line.strip() for line in script.splitlines() if line.strip().startswith("make ")]
    assert steps == ["make lint", "make typecheck", "make test"]
    assert "make test" in (ROOT / "README.md").read_text()
