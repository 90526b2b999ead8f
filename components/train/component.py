"""train: fit the recipe's model on the ingested split."""

from typing import Any

from kfp.dsl import HTML, Dataset, Input, Model, Output


def train(
    dataset: Input[Dataset],
    config: dict,
    model: Output[Model],
    training_curves: Output[HTML],
) -> None:
    """Train on the split's train part with early stopping on its validation part; writes the
    best-epoch Keras model with its training summary (Model) and the loss/accuracy curves."""
    from components.steps import train_step
    from ingot.train import TrainConfig

    model.metadata.update(train_step(dataset.path, TrainConfig.from_dict(config), model.path, training_curves.path))


def build(image: str) -> Any:
    from components import component_from

    return component_from(train, image)
