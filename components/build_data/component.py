"""build-data: base + labelled production rows into a dataset version, when the run has a
production policy."""

from typing import Any

from kfp.dsl import Dataset, Output


def build_data(
    production: dict,
    dataset_uri: str,
    recipe: dict,
    overrides: list,
    architecture: str,
    epochs: int,
    model_name: str,
    registry_url: str,
    dataset: Output[Dataset],
) -> dict:
    """With `production` (the policy: capture_url, production_weight, holdout_fraction, window_s,
    max_rows, until), ingest the base with the recipe, join the capture store's inputs with their
    feedback labels in the window, build both into a dataset version (Dataset: the TFRecord
    artifact with a production_holdout split) and record it in the registry; the ingest step then
    takes it as it is. With `{}`, a note saying nothing was built: the run trains on the base.
    The inference log's URL comes from $INGOT_LOG_URL (else the registry's database), never a
    parameter. Returns what was built."""
    from ingot.retrain.config import resolve_config
    from ingot.retrain.production import pipeline_training_data

    # Without a policy nothing is read: a bad recipe is then ingest's to report.
    config = resolve_config(recipe, overrides, architecture=architecture, epochs=epochs) if production else None
    built = pipeline_training_data(production, model=model_name, dataset_uri=dataset_uri, config=config,
                                   output=dataset.path, output_uri=dataset.uri, registry_url=registry_url)
    dataset.metadata.update(built)
    return built


def build(image: str) -> Any:
    from components import component_from

    return component_from(build_data, image)
