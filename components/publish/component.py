"""publish: put a blessed SavedModel into the model repository as its next version."""

from typing import Any, NamedTuple

from kfp.dsl import Input, Model


def publish(
    serving_model: Input[Model],
    model_name: str,
    model_repository: str,
) -> NamedTuple("PublishOutputs", [("version", int), ("path", str), ("model_sha256", str), ("created", bool)]):
    """Atomically publish into `<model_repository>/<model_name>/<version>/`. Idempotent: a retry
    with the same model (same sha256) returns the version already published."""
    from collections import namedtuple

    from components.steps import publish_step

    published = publish_step(serving_model.path, model_repository, model_name)
    outputs = namedtuple("PublishOutputs", ["version", "path", "model_sha256", "created"])
    return outputs(published.version, published.path, published.model_sha256, published.created)


def build(image: str) -> Any:
    from components import component_from

    return component_from(publish, image)
