"""Locations Ingot reads and writes, each overridable from the environment."""

from __future__ import annotations

import os
from pathlib import Path


def dataset_root() -> Path:
    """Where bundled and downloaded datasets are materialized (`DATASET_ROOT`)."""
    return Path(os.environ.get("DATASET_ROOT", "~/.cache/ingot/datasets")).expanduser()


def data_dir() -> Path:
    """The project's data directory (`INGOT_DATA_DIR`): the SQLite registry, local pipeline roots."""
    return Path(os.environ.get("INGOT_DATA_DIR", ".ingot")).expanduser()


def model_repository() -> str:
    """The default model repository base (`INGOT_MODEL_REPOSITORY`), TF Serving's layout."""
    return os.environ.get("INGOT_MODEL_REPOSITORY", "model-repository")
