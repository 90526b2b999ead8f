"""reject: record a model the gate rejected, with its reasons, in the model registry."""

from typing import Any

from kfp.dsl import Artifact, Input


def reject(
    evaluation: Input[Artifact],
    model_name: str,
    registry_url: str,
    pipeline_run_id: str,
) -> str:
    """Record the rejection (reasons, metrics, data hash, config, pipeline run); nothing was
    published, so it takes no version number. Returns the registry record as JSON."""
    import json

    from components.steps import reject_step
    from ingot.retrain.registry import registry_summary

    record = reject_step(
        evaluation.path, registry_url=registry_url, model_name=model_name, pipeline_run_id=pipeline_run_id
    )
    return json.dumps(registry_summary(record), sort_keys=True)


def build(image: str) -> Any:
    from components import component_from

    return component_from(reject, image)
