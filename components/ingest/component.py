"""ingest: load and validate the dataset, split it, and report on it."""

from typing import Any

from kfp.dsl import HTML, Dataset, Input, Output


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
    built_dataset: Input[Dataset] = None,
) -> dict:
    """Check the recipe and that the model repository and registry are reachable (before any
    training), then load and validate the dataset (local path, gs://, s3://, bundled:digits),
    split it reproducibly, and write the split (Dataset) and the data report (class counts,
    sizes, skipped files, a 3x3 sample grid). When the build-data step built a dataset version
    (`built_dataset`), that is the dataset, taken as it is: verified, copied, no new split.
    Returns the resolved training config."""
    from components.steps import built_dataset_source, ingest_step
    from ingot.retrain.config import config_parameter, resolve_config
    from ingot.retrain.registry import check_destinations

    config = resolve_config(recipe, overrides, architecture=architecture, epochs=epochs)
    check_destinations(model_repository, registry_url)
    source = built_dataset_source(built_dataset.path if built_dataset is not None else None) or dataset_uri
    dataset.metadata.update(ingest_step(source, config, dataset.path, data_report.path))
    if source != dataset_uri:
        dataset.metadata.update(source=built_dataset.uri, built_by="build-data")
    return config_parameter(config)


def build(image: str) -> Any:
    from components import component_from

    return component_from(ingest, image)
