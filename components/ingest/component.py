"""ingest: load and validate the dataset, split it, and report on it."""

from typing import Any

from kfp.dsl import HTML, Dataset, Output


def ingest(
    dataset_uri: str,
    recipe: dict,
    overrides: list,
    architecture: str,
    epochs: int,
    model_repository: str,
    registry_url: str,
    dataset: Output[Dataset],
    data_report: Output[HTML],
) -> dict:
    """Check the recipe and that the model repository and registry are reachable (before any
    training), then load and validate the dataset (local path, gs://, s3://, bundled:digits),
    split it reproducibly, and write the split (Dataset) and the data report (class counts,
    sizes, skipped files, a 3x3 sample grid). Returns the resolved training config."""
    from components.steps import ingest_step
    from ingot.retrain.config import config_parameter, resolve_config
    from ingot.retrain.registry import check_destinations

    config = resolve_config(recipe, overrides, architecture=architecture, epochs=epochs)
    check_destinations(model_repository, registry_url)
    dataset.metadata.update(ingest_step(dataset_uri, config, dataset.path, data_report.path))
    return config_parameter(config)


def build(image: str) -> Any:
    from components import component_from

    return component_from(ingest, image)
