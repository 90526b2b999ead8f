"""train: fit the recipe's model on the ingested split."""

from typing import Any

from kfp.dsl import HTML, Dataset, Input, Model, Output


def train(
    dataset: Input[Dataset],
    config: dict,
    image: str,
    pipeline_run_id: str,
    accelerator_type: str,
    worker_accelerator_limit: int,
    gpu_node_selector: dict,
    gpu_tolerations: list,
    model: Output[Model],
    training_curves: Output[HTML],
) -> None:
    """Train on the split's train part with early stopping on its validation part; writes the
    best-epoch Keras model with its training summary (Model) and the loss/accuracy curves. With
    the recipe's workers > 1 on a cluster, the training runs as a TFJob of that many workers,
    each with `worker_accelerator_limit` accelerators of `accelerator_type` and the node selector
    and tolerations given (this step then only submits and waits)."""
    from components.steps import ClusterTraining, in_cluster, pod_namespace, train_step
    from ingot.train.config import TrainConfig

    cluster = None
    if in_cluster():
        cluster = ClusterTraining(
            dataset_uri=dataset.uri, model_uri=model.uri, image=image, namespace=pod_namespace(),
            run_id=pipeline_run_id, gpus_per_worker=worker_accelerator_limit, gpu_resource=accelerator_type,
            node_selector=gpu_node_selector, tolerations=gpu_tolerations,
        )
    metadata = train_step(dataset.path, TrainConfig.from_dict(config), model.path, training_curves.path,
                          cluster=cluster)
    model.metadata.update(metadata)


def build(image: str) -> Any:
    from components import component_from

    return component_from(train, image)
