"""The registry side of a retraining run, shared by `ingot train --register` and the pipeline's
steps: the one way to open the registry, registering a published version
and recording a rejection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ingot import settings

if TYPE_CHECKING:
    from ingot.evaluate.record import EvaluationRecord
    from ingot.registry.records import ModelVersion
    from ingot.registry.store import Registry


def open_registry(registry_url: str | None = None, *, required: bool = True) -> Registry:
    """The registry at `registry_url`, else `$INGOT_REGISTRY_URL`, its schema created or migrated.

    `required` (pipeline steps): neither is an error, since a SQLite file inside a pod would
    vanish with it. Otherwise (one machine) the default SQLite file under `$INGOT_DATA_DIR`."""
    from ingot.registry.store import Registry, default_url

    if required:
        return Registry.from_url(settings.required_registry_url(registry_url))
    return Registry.from_url((registry_url or "").strip() or default_url())


def check_destinations(model_repository: str | None, registry_url: str | None) -> dict[str, str]:
    """Resolve and reach the model repository and the registry before any training is spent: the
    repository base is created if missing, the registry opened (and its schema migrated)."""
    from ingot import storage

    base = settings.required_model_repository(model_repository)
    storage.makedirs(base)
    with open_registry(registry_url) as registry:
        url = registry.url
    return {"model_repository": base, "registry": url}


def register(registry: Registry, record: EvaluationRecord, *, version: int, artifact_uri: str,
             model_sha256: str) -> ModelVersion:
    """Register a published version with the record's lineage and mark it READY once its
    checksums verify. The registry's stage policy makes the first blessed version of a name
    champion and later ones candidates. Idempotent: a retry gets the same record back."""
    from ingot.registry import repository_verifier

    registry.register_version(
        record.model_name, version=int(version), artifact_uri=artifact_uri, model_sha256=model_sha256,
        **record.registry_fields(),
    )
    link_trained_dataset(registry, record.model_name, int(version), record.data_hash)
    return registry.mark_ready(record.model_name, int(version), verify=repository_verifier)


def link_trained_dataset(registry: Registry, name: str, version: int, data_hash: str | None) -> int | None:
    """Link the version to the dataset version it trained on, found by the data's content hash
    (a run on a built dataset version); a run on a plain dataset has none. Returns its id."""
    from ingot.registry.datasets import dataset_versions, link_dataset_version

    if not data_hash:
        return None
    found = next((d for d in dataset_versions(registry, name) if d.content_hash == data_hash), None)
    if found is None:
        return None
    link_dataset_version(registry, name, version, found.id)
    return found.id


def reject(registry: Registry, record: EvaluationRecord) -> ModelVersion:
    """Record a model the gate rejected, with its reasons (idempotent per pipeline run)."""
    return registry.record_rejection(record.model_name, reasons=record.gate["reasons"], **record.registry_fields())


def registry_summary(version: ModelVersion, *, published_created: bool | None = None) -> dict[str, Any]:
    """The small JSON a register/reject step outputs: enough to find and describe the record."""
    return {
        "id": version.id,
        "name": version.name,
        "version": version.version,
        "stage": version.stage.value if version.stage else None,
        "status": version.status.value,
        "artifact_uri": version.artifact_uri,
        "model_sha256": version.model_sha256,
        "pipeline_run_id": version.pipeline_run_id,
        "published_created": published_created,
    }
