"""The `ingot-retrain` pipeline: build-data -> ingest -> train (GPU) -> evaluate -> [blessed?]
publish -> register, or record the rejection.

`build_pipeline(image)` builds it with every step in `image` (default `$INGOT_IMAGE`, else
components.DEFAULT_IMAGE), so the image is a build-time setting; nothing happens at import.
The compiled IR YAML in pipelines/compiled/ is what users upload in the Kubeflow UI;
`make pipelines` (`ingot pipeline compile`) rewrites it and a golden test keeps it in step
with this file.

Parameters that can be empty resolve inside the steps: an empty `dataset_uri` means the recipe's
dataset (else bundled digits), `architecture=""`/`epochs=0` the recipe's, an empty
`model_repository`/`registry_url` the steps' $INGOT_MODEL_REPOSITORY/$INGOT_REGISTRY_URL; with
neither, the first step fails before anything is trained. On a cluster the registry URL (it holds
a password) comes from the Secret named by `registry_secret` (key `url`), mounted as
$INGOT_REGISTRY_URL into the steps that talk to the registry, so it never shows as a run parameter.

`production` (the policy of ingot.retrain.production.ProductionData: capture_url, production_weight,
holdout_fraction, window_s, max_rows and the window's end `until`) makes the build-data step build
the base dataset plus the labelled production rows into a dataset version, recorded in the
registry, which ingest then takes as it is (its production_holdout split is what evaluate scores
candidate and champion on); `{}` (the default) trains on the base. The inference log's URL comes
from the registry Secret's optional `log_url` key (else the registry's database), and an object
store's credentials for the capture store from the `capture_secret` Secret (optional keys
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL): never parameters.

A recipe with `workers` > 1 trains as a TFJob (Kubeflow Training Operator): the train step only
submits it and waits, and each worker gets `worker_accelerator_limit` accelerators of
`accelerator_type` with the GPU node selector and tolerations; set `accelerator_limit=0` for such
runs so the waiting step holds no GPU.
"""

# No `from __future__ import annotations` here: kfp reads the pipeline function's annotations
# as real types.
import ast
import os
import re
from pathlib import Path
from typing import Any, Union

PIPELINE_NAME = "ingot-retrain"
COMPILED_PATH = Path(__file__).resolve().parent / "compiled" / f"{PIPELINE_NAME}.yaml"
# A train step lost to a preempted or failed GPU node is retried; the backoff leaves time for the
# node pool to replace it. Local runs pass a short backoff (nothing to wait for on this machine).
TRAIN_RETRIES = 2
TRAIN_RETRY_BACKOFF = "60s"
# The taint GPU node pools usually carry (GKE adds it; the NVIDIA GPU operator documents it).
DEFAULT_GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
# Requests for the light steps: they read and copy files, write a few rows.
LIGHT_REQUESTS = {"build_data": ("1", "4Gi"), "ingest": ("1", "2Gi"), "evaluate": ("1", "4Gi"), "publish": ("500m", "2Gi"),
                  "register": ("250m", "512Mi"), "reject": ("250m", "512Mi")}
# The Secret (key `url`) that gives the registry steps $INGOT_REGISTRY_URL on a cluster.
DEFAULT_REGISTRY_SECRET = "ingot-registry"
# The Secret whose optional keys give the build-data step an object store's credentials for the
# capture store (the keys the chart's gateway.capture.credentials Secret holds).
DEFAULT_CAPTURE_SECRET = "ingot-capture"
CAPTURE_CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")


def build_pipeline(image: str | None = None, *, train_retry_backoff: str = TRAIN_RETRY_BACKOFF) -> Any:
    """The pipeline function (a kfp GraphComponent) with every step running in `image`."""
    from kfp import dsl, kubernetes

    from components import build_components
    from ingot import settings
    from ingot.evaluate.gate import DEFAULT_INT8_MAX_LOSS

    steps = build_components(image)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Retrain an image classifier: build the base and labelled production data into a "
        "dataset version (when `production` is set), ingest and validate the data, train (on a GPU "
        "node), evaluate per class against the gate and the registry's champion, then publish "
        "and register a blessed model, or record why it was rejected.",
    )
    def ingot_retrain(
        dataset_uri: str = "",
        model_name: str = "digits",
        recipe: dict = {},
        overrides: list = [],
        architecture: str = "",
        epochs: int = 0,
        min_accuracy: float = settings.DEFAULT_MIN_ACCURACY,
        min_class_f1: float = settings.DEFAULT_MIN_CLASS_F1,
        max_regression: float = settings.DEFAULT_MAX_REGRESSION,
        int8_max_loss: float = DEFAULT_INT8_MAX_LOSS,
        production: dict = {},
        model_repository: str = "",
        registry_url: str = "",
        registry_secret: str = DEFAULT_REGISTRY_SECRET,
        capture_secret: str = DEFAULT_CAPTURE_SECRET,
        accelerator_type: str = "nvidia.com/gpu",
        accelerator_limit: int = 1,
        worker_accelerator_limit: int = 1,
        gpu_node_selector: dict = {},
        gpu_tolerations: list = DEFAULT_GPU_TOLERATIONS,
        train_cpu_request: str = "4",
        train_memory_request: str = "16Gi",
    ) -> str:
        run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER

        # Cached like ingest: its parameters name the window (production.until), so a cached
        # build stands for the same data, and a run without production reuses its empty note.
        build_data = steps.build_data(
            production=production, dataset_uri=dataset_uri, recipe=recipe, overrides=overrides,
            architecture=architecture, epochs=epochs, model_name=model_name, registry_url=registry_url,
        ).set_display_name("build dataset version")
        _requests(build_data, "build_data")
        kubernetes.use_secret_as_env(
            build_data, secret_name=capture_secret, secret_key_to_env={key: key for key in CAPTURE_CREDENTIAL_KEYS},
            optional=True,
        )

        ingest = steps.ingest(
            dataset_uri=dataset_uri, recipe=recipe, overrides=overrides, architecture=architecture, epochs=epochs,
            model_repository=model_repository, registry_url=registry_url,
            built_dataset=build_data.outputs["dataset"],
        ).set_display_name("ingest and validate")
        _requests(ingest, "ingest")

        train = steps.train(
            dataset=ingest.outputs["dataset"], config=ingest.outputs["Output"], image=steps.image,
            pipeline_run_id=run_id, accelerator_type=accelerator_type, worker_accelerator_limit=worker_accelerator_limit,
            gpu_node_selector=gpu_node_selector, gpu_tolerations=gpu_tolerations,
        )
        train.set_display_name("train").set_retry(TRAIN_RETRIES, backoff_duration=train_retry_backoff, backoff_factor=2.0)
        train.set_cpu_request(train_cpu_request).set_memory_request(train_memory_request)
        train.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_limit)
        kubernetes.add_node_selector_json(train, gpu_node_selector)
        kubernetes.add_toleration_json(train, gpu_tolerations)

        evaluate = steps.evaluate(
            dataset=ingest.outputs["dataset"], model=train.outputs["model"], config=ingest.outputs["Output"],
            model_name=model_name, min_accuracy=min_accuracy, min_class_f1=min_class_f1,
            max_regression=max_regression, int8_max_loss=int8_max_loss, registry_url=registry_url,
            pipeline_run_id=run_id,
        ).set_display_name("evaluate and gate")
        _requests(evaluate, "evaluate")

        with dsl.If(evaluate.outputs["blessed"] == True, name="blessed"):
            publish = steps.publish(
                serving_model=evaluate.outputs["serving_model"], model_name=model_name,
                model_repository=model_repository,
            ).set_display_name("publish").set_caching_options(False)
            _requests(publish, "publish")
            register = steps.register(
                evaluation=evaluate.outputs["evaluation"], model_name=model_name,
                version=publish.outputs["version"], artifact_uri=publish.outputs["path"],
                model_sha256=publish.outputs["model_sha256"], created=publish.outputs["created"],
                registry_url=registry_url, pipeline_run_id=run_id,
            ).set_display_name("register").set_caching_options(False)
            _requests(register, "register")
        with dsl.Else(name="rejected"):
            reject = steps.reject(
                evaluation=evaluate.outputs["evaluation"], model_name=model_name, registry_url=registry_url,
                pipeline_run_id=run_id,
            ).set_display_name("record rejection").set_caching_options(False)
            _requests(reject, "reject")
        for task in (ingest, evaluate, register, reject):
            kubernetes.use_secret_as_env(
                task, secret_name=registry_secret, secret_key_to_env={"url": "INGOT_REGISTRY_URL"}, optional=True
            )
        # build-data records the dataset version and reads the inference log (`log_url`, optional:
        # without it the log is the registry's database).
        kubernetes.use_secret_as_env(
            build_data, secret_name=registry_secret,
            secret_key_to_env={"url": "INGOT_REGISTRY_URL", "log_url": "INGOT_LOG_URL"}, optional=True,
        )
        return dsl.OneOf(register.output, reject.output)

    return ingot_retrain


def _requests(task: Any, step: str) -> None:
    cpu, memory = LIGHT_REQUESTS[step]
    task.set_cpu_request(cpu).set_memory_request(memory)


def compile_pipeline(package_path: Union[str, "os.PathLike[str]"] = COMPILED_PATH, *, image: str | None = None) -> Path:
    """Compile the pipeline to IR YAML at `package_path` and return the path."""
    from kfp import compiler

    path = Path(package_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=build_pipeline(image), package_path=str(path))
    path.write_text(canonical_header(path.read_text(encoding="utf-8")), encoding="utf-8")
    return path


_HEADER_DEFAULT = re.compile(r"^(#\s+\w+: \w+ \[Default: )(.+)(\])$")


def canonical_header(text: str) -> str:
    """Sort the keys of dict defaults in the compiler's comment header.

    kfp renders defaults there from protobuf Structs, whose key order varies from process to
    process; sorted keys keep the checked-in YAML byte-stable. Only comments change.
    """

    def ordered(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: ordered(value[key]) for key in sorted(value)}
        if isinstance(value, list):
            return [ordered(item) for item in value]
        return value

    lines = text.split("\n")
    for index, line in enumerate(lines):
        if not line.startswith("#"):
            break
        match = _HEADER_DEFAULT.match(line)
        if match is None:
            continue
        try:
            value = ast.literal_eval(match.group(2))
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, (dict, list)):
            lines[index] = f"{match.group(1)}{ordered(value)!r}{match.group(3)}"
    return "\n".join(lines)
