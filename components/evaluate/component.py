"""evaluate: per-class metrics on the held-out test split and the blessing gate."""

from typing import Any, NamedTuple

from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Metrics,
    Model,
    Output,
)


def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    config: dict,
    model_name: str,
    min_accuracy: float,
    min_class_f1: float,
    max_regression: float,
    int8_max_loss: float,
    registry_url: str,
    pipeline_run_id: str,
    metrics: Output[Metrics],
    confusion_matrix: Output[ClassificationMetrics],
    evaluation_report: Output[HTML],
    evaluation: Output[Artifact],
    serving_model: Output[Model],
) -> NamedTuple("EvaluateOutputs", [("blessed", bool), ("decision", str)]):
    """Evaluate on the test split, compare with the registry's champion, apply the gate.
    Outputs the scalars and confusion matrix the Kubeflow UI renders, the evaluation report
    (confusion-matrix heatmap, per-class bars and table, the gate's reasons), the evaluation
    record for the registry and, when blessed, the serving SavedModel to publish, with the int8
    model.tflite beside it unless its accuracy is more than `int8_max_loss` below the float
    model's on the same test rows (the card's `int8` section says why)."""
    from collections import namedtuple

    from components.steps import evaluate_step
    from ingot.evaluate.gate import GateThresholds
    from ingot.train.config import TrainConfig

    result = evaluate_step(
        dataset.path, model.path, TrainConfig.from_dict(config),
        GateThresholds(min_accuracy=min_accuracy, min_class_f1=min_class_f1, max_regression=max_regression,
                       int8_max_loss=int8_max_loss),
        model_name=model_name, registry_url=registry_url, pipeline_run_id=pipeline_run_id,
        evaluation_json=evaluation.path, report_html=evaluation_report.path,
        serving_model_dir=serving_model.path,
    )
    for name, value in result.scalars.items():
        metrics.log_metric(name, value)
    confusion_matrix.log_confusion_matrix(result.class_names, result.confusion_matrix)
    evaluation.metadata.update(blessed=result.blessed, data_hash=result.record.data_hash)
    if result.blessed:
        serving_model.metadata.update(framework="tensorflow", format="SavedModel", model_name=model_name,
                                      exported=True)
    else:
        # Every declared output must exist when the step ends (the KFP launcher uploads each one),
        # so a rejected model leaves an empty, labelled directory instead of a SavedModel.
        import os

        os.makedirs(serving_model.path, exist_ok=True)
        serving_model.metadata.update(exported=False, reason="not blessed by the gate")
    return namedtuple("EvaluateOutputs", ["blessed", "decision"])(result.blessed, result.summary)


def build(image: str) -> Any:
    from components import component_from

    return component_from(evaluate, image)
