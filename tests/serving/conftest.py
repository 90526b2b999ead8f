"""Session-wide tiny models, exported once per test process."""

from __future__ import annotations

import pytest

from tests.serving.support import export, tiny_model


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """Two different real exports: 'v1' (trained 3 epochs) and 'v2' (another seed, untrained)."""
    root = tmp_path_factory.mktemp("exports")
    return {
        "v1": export(tiny_model(seed=0, epochs=3), root / "v1"),
        "v2": export(tiny_model(seed=7, epochs=0), root / "v2"),
    }
