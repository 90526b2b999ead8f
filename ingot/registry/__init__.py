"""Model registry: versions with lineage, PENDING -> READY only after the artifact verifies,
champion/challenger stages with an append-only event history; SQLite by default, PostgreSQL by URL.

    registry = Registry.from_url(None)          # $INGOT_REGISTRY_URL, else SQLite under settings.data_dir()
    v = registry.register_version("digits", version=3, artifact_uri=..., model_sha256=..., gate=decision)
    registry.mark_ready("digits", 3, verify=repository_verifier)  # MANIFEST.sha256 + model digest
"""

from ingot.db import default_url, normalize_url
from ingot.registry.migrations import SCHEMA_VERSION
from ingot.registry.policy import ALLOWED_TRANSITIONS
from ingot.registry.records import ModelSummary, ModelVersion, NewVersion, Stage, StageEvent, Status
from ingot.registry.store import Registry
from ingot.registry.verify import Verifier, checksum_verifier, repository_verifier
from ingot.settings import REGISTRY_URL_ENV

__all__ = [
    "ALLOWED_TRANSITIONS",
    "REGISTRY_URL_ENV",
    "SCHEMA_VERSION",
    "ModelSummary",
    "ModelVersion",
    "NewVersion",
    "Registry",
    "Stage",
    "StageEvent",
    "Status",
    "Verifier",
    "checksum_verifier",
    "default_url",
    "normalize_url",
    "repository_verifier",
]
