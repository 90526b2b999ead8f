"""register: record a published version in the model registry with its lineage."""

from typing import Any

from kfp.dsl import Artifact, Input


def register(
    evaluation: Input[Artifact],
    model_name: str,
    version: int,
    artifact_uri: str,
    model_sha256: str,
    created: bool,
    registry_url: str,
    pipeline_run_id: str,
) -> str:
    """Register the version (data hash, config, metrics, gate decision, artifact URI, sha256,
    pipeline run) and mark it READY once its checksums verify: the first blessed version of a
    name becomes champion, later ones candidates. Returns the registry record as JSON."""
    import json

    from components.steps import register_step
    from ingot.retrain.registry import registry_summary

    record = register_step(
        evaluation.path, registry_url=registry_url, model_name=model_name, version=version,
        artifact_uri=artifact_uri, model_sha256=model_sha256, pipeline_run_id=pipeline_run_id,
    )
    return json.dumps(registry_summary(record, published_created=created), sort_keys=True)


def build(image: str) -> Any:
    from components import component_from

    return component_from(register, image)
