"""One source of truth for the environment variables Ingot reads and the defaults behind them.

Every command, pipeline step and component reads its locations and defaults here, so a name or a
default changes in one place. Values are read when a function is called, never at import.
"""

from __future__ import annotations

import os
from pathlib import Path

from ingot.errors import ConfigError

# Environment variable names.
DATASET_ROOT_ENV = "DATASET_ROOT"
DATA_DIR_ENV = "INGOT_DATA_DIR"
MODEL_REPOSITORY_ENV = "INGOT_MODEL_REPOSITORY"
REGISTRY_URL_ENV = "INGOT_REGISTRY_URL"
LOG_URL_ENV = "INGOT_LOG_URL"  # the inference log; unset: the registry's database
CACHE_URL_ENV = "INGOT_CACHE_URL"  # the gateway's prediction cache (redis://...); unset: no cache
IMAGE_ENV = "INGOT_IMAGE"
SERVER_ENV = "INGOT_SERVER"  # `ingot predict`: the model server to ask
MODEL_NAME_ENV = "INGOT_MODEL_NAME"  # `ingot predict`: the model to ask for
GATEWAY_ENV = "INGOT_GATEWAY"  # `ingot feedback`: the gateway's REST URL
FEEDBACK_TOKEN_ENV = "INGOT_FEEDBACK_TOKEN"  # `ingot feedback`: the feedback bearer token itself
FEEDBACK_SECRET_FILE_ENV = "INGOT_FEEDBACK_SECRET_FILE"  # `ingot gateway`: the feedback-key secret (32+ bytes)
ROLLOUT_TARGET_ENV = "INGOT_ROLLOUT_TARGET"  # `ingot rollout`: the actuator target as JSON (set by the chart)
# The drift monitor and the retraining it starts.
MONITOR_DATASET_ENV = "INGOT_MONITOR_DATASET"  # the dataset a triggered run reads
KFP_HOST_ENV = "INGOT_KFP_HOST"  # a Kubeflow Pipelines endpoint; unset: run locally
CAPTURE_URL_ENV = "INGOT_CAPTURE_URL"  # the gateway's capture store (a directory, s3:// or gs://)
DEFAULT_CAPTURE_URL = "./.ingot/capture"
MONITOR_DB_URL_ENV = "INGOT_MONITOR_DB_URL"  # how a local run finds the trigger table (not argv: passwords)
# Set by the platforms Ingot runs on.
KFP_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # a projected service-account token for the KFP API
TF_CONFIG_ENV = "TF_CONFIG"  # a multi-worker cluster and this worker's place in it
KUBERNETES_SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"  # present in every pod
TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"  # TensorFlow's C++ start-up chatter

# Defaults.
DEFAULT_DATASET = "bundled:digits"
DEFAULT_DATASET_ROOT = "~/.cache/ingot/datasets"
DEFAULT_DATA_DIR = ".ingot"
DEFAULT_MODEL_REPOSITORY = "model-repository"
DEFAULT_SERVER = "http://127.0.0.1:8501"  # a local model server's (or gateway's) REST port
# The image built from the repository's Dockerfile, under the name the release pushes it as (the
# kustomize manifests use the same). Fixed, so the checked-in compiled pipeline is deterministic.
DEFAULT_IMAGE = "ghcr.io/ingot/ingot:0.1.0"
# The blessing gate's defaults, shared by `ingot train`, `ingot pipeline` and the pipeline's
# parameters: overall accuracy floor, per-class F1 floor, allowed regression against the champion.
DEFAULT_MIN_ACCURACY = 0.9
DEFAULT_MIN_CLASS_F1 = 0.7
DEFAULT_MAX_REGRESSION = 0.01
DEFAULT_TF_LOG_LEVEL = "2"  # what Ingot's child processes get unless the caller set one


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def dataset_root() -> Path:
    """Where bundled and downloaded datasets are materialized (`DATASET_ROOT`)."""
    return Path(_env(DATASET_ROOT_ENV) or DEFAULT_DATASET_ROOT).expanduser()


def data_dir() -> Path:
    """The project's data directory (`INGOT_DATA_DIR`): the SQLite registry, local pipeline roots."""
    return Path(_env(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def model_repository() -> str:
    """The model repository base for one machine (`INGOT_MODEL_REPOSITORY`, else ./model-repository)."""
    return _env(MODEL_REPOSITORY_ENV) or DEFAULT_MODEL_REPOSITORY


def image() -> str:
    """The container image the pipeline's steps run in (`INGOT_IMAGE`, else DEFAULT_IMAGE)."""
    return _env(IMAGE_ENV) or DEFAULT_IMAGE


def cache_url() -> str:
    """The gateway's prediction cache (`INGOT_CACHE_URL`, a redis:// URL); "" means no cache."""
    return _env(CACHE_URL_ENV)


def server() -> str:
    """The model server `ingot predict` asks (`INGOT_SERVER`, else DEFAULT_SERVER)."""
    return _env(SERVER_ENV) or DEFAULT_SERVER


def model_name() -> str | None:
    """The model `ingot predict` asks for (`INGOT_MODEL_NAME`), or None: the server's only one."""
    return _env(MODEL_NAME_ENV) or None


def gateway() -> str:
    """The gateway `ingot feedback` posts to (`INGOT_GATEWAY`, else DEFAULT_SERVER)."""
    return _env(GATEWAY_ENV) or DEFAULT_SERVER


def feedback_token() -> str | None:
    """The feedback bearer token (`INGOT_FEEDBACK_TOKEN`), or None."""
    return _env(FEEDBACK_TOKEN_ENV) or None


def capture_url(value: str | None = None) -> str:
    """Where captured inputs are stored: `value`, else `INGOT_CAPTURE_URL`, else ./.ingot/capture."""
    return value or _env(CAPTURE_URL_ENV) or DEFAULT_CAPTURE_URL


def rollout_target() -> str:
    """The rollout actuator target's JSON text (`INGOT_ROLLOUT_TARGET`), or "" when unset."""
    return _env(ROLLOUT_TARGET_ENV)


def required_model_repository(value: str | None) -> str:
    """Where a pipeline step publishes: `value`, else `$INGOT_MODEL_REPOSITORY`. Neither is an
    error, never a silent default: in a pod a relative default would publish into the
    container's throw-away filesystem."""
    resolved = (value or "").strip() or _env(MODEL_REPOSITORY_ENV)
    if not resolved:
        raise ConfigError(
            f"no model repository given: set the pipeline's model_repository parameter (gs://..., s3://... or a "
            f"path on a volume the steps mount) or ${MODEL_REPOSITORY_ENV} in the steps' environment"
        )
    return resolved


def required_registry_url(value: str | None) -> str:
    """The registry a pipeline step uses: `value`, else `$INGOT_REGISTRY_URL`; neither is an
    error (a SQLite file inside a pod would vanish with it)."""
    resolved = (value or "").strip() or _env(REGISTRY_URL_ENV)
    if not resolved:
        raise ConfigError(
            f"no registry given: set the pipeline's registry_url parameter (postgresql://... for a cluster, "
            f"sqlite:///PATH on one machine) or ${REGISTRY_URL_ENV} in the steps' environment (on a "
            f"cluster the pipeline mounts it from the registry_secret Secret's 'url' key)"
        )
    return resolved


def in_kubernetes() -> bool:
    """True inside a Kubernetes pod (the service account's API host is in the environment)."""
    return bool(_env(KUBERNETES_SERVICE_HOST_ENV))


def tf_log_level() -> str:
    """`TF_CPP_MIN_LOG_LEVEL` for child processes: the caller's, else DEFAULT_TF_LOG_LEVEL."""
    return os.environ.get(TF_LOG_LEVEL_ENV, DEFAULT_TF_LOG_LEVEL)


def monitor_dataset() -> str:
    """The dataset a triggered retraining reads (`INGOT_MONITOR_DATASET`; "" means the recipe's)."""
    return _env(MONITOR_DATASET_ENV)


def kfp_host() -> str | None:
    """The Kubeflow Pipelines endpoint the monitor submits to (`INGOT_KFP_HOST`); None: run locally."""
    return _env(KFP_HOST_ENV) or None
