"""Submit ingot-retrain to a Kubeflow Pipelines API endpoint, and ask it how a run is doing.

The one implementation behind `ingot pipeline run --host` and the drift monitor's cluster
triggers. kfp is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ingot import settings
from ingot.errors import ConfigError, IngotError
from pipelines.request import PipelineRequest

# KFP v2beta1 run states that mean the run will not change any more.
FINISHED_STATES = {"SUCCEEDED": "succeeded", "SKIPPED": "succeeded", "FAILED": "failed", "CANCELED": "failed",
                   "CANCELING": "failed"}


@dataclass(frozen=True)
class SubmittedRun:
    host: str
    run_id: str
    run_name: str

    @property
    def url(self) -> str:
        return f"{self.host}/#/runs/details/{self.run_id}"


def check_host(host: str) -> str:
    host = (host or "").rstrip("/")
    if not host.startswith(("http://", "https://")):
        raise ConfigError(f"--host {host!r} is not an http(s) URL; expected e.g. http://localhost:8080")
    return host


def client(host: str, namespace: str | None = None) -> Any:
    """A kfp.Client for `host`, authenticated by a mounted service-account token when present."""
    import kfp

    with contextlib.redirect_stdout(io.StringIO()), _quiet_warnings():
        return kfp.Client(host=host, namespace=namespace or "kubeflow", credentials=_token_credentials())


def submit_pipeline(
    host: str,
    request: PipelineRequest,
    *,
    image: str | None = None,
    run_name: str | None = None,
    experiment: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
) -> SubmittedRun:
    """Compile ingot-retrain and start one run of it with the request's parameters.

    Network, HTTP and API errors become one IngotError line naming the host.
    """
    from pipelines.retrain import build_pipeline

    host = check_host(host)
    run_name = run_name or f"ingot-retrain {request.model_name} {datetime.now().strftime('%Y-%m-%d %H-%M-%S')}"
    noise = io.StringIO()  # kfp prints its own "Experiment details"/"Run details" lines
    try:
        kfp_client = client(host, namespace)
        with contextlib.redirect_stdout(noise), _quiet_warnings():
            result = kfp_client.create_run_from_pipeline_func(
                build_pipeline(image), arguments=request.arguments(), run_name=run_name,
                experiment_name=experiment, namespace=namespace, service_account=service_account,
            )
    except IngotError:
        raise
    except Exception as err:
        raise IngotError(f"submitting to {host} failed: {one_line(err)}") from err
    return SubmittedRun(host=host, run_id=str(result.run_id), run_name=run_name)


def run_state(host: str, run_id: str, namespace: str | None = None) -> str:
    """The KFP state of a run (e.g. RUNNING, SUCCEEDED, FAILED), as the API names it."""
    host = check_host(host)
    try:
        with _quiet_warnings():
            run = client(host, namespace).get_run(run_id)
    except Exception as err:
        raise IngotError(f"asking {host} about run {run_id} failed: {one_line(err)}") from err
    return str(getattr(run, "state", None) or "UNKNOWN")


def _token_credentials() -> Any:
    """The projected service-account token at $KF_PIPELINES_SA_TOKEN_PATH, when one is mounted (a
    pod submitting runs, e.g. the retrain CronJob); kfp.Client skips it whenever a host is given."""
    path = os.environ.get(settings.KFP_TOKEN_PATH_ENV, "")
    if not path or not Path(path).is_file():
        return None
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    return ServiceAccountTokenVolumeCredentials(path)


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def one_line(err: BaseException) -> str:
    status, reason = getattr(err, "status", None), getattr(err, "reason", None)
    if status is not None:
        body = getattr(err, "body", None) or ""
        with contextlib.suppress(ValueError, TypeError):
            body = json.loads(body).get("message") or json.loads(body).get("error") or body
        return f"HTTP {status} {reason or ''}".strip() + (f": {str(body).strip()[:300]}" if body else "")
    if isinstance(reason, BaseException):  # urllib3's MaxRetryError wraps the connection error
        detail = str(reason).rsplit(": ", 1)[-1].rstrip(")'\"")
        return f"cannot connect: {detail}"
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__
