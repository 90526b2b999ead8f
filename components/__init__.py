"""Kubeflow Pipelines v2 components, one per retraining step, each a thin wrapper over
`ingot.retrain`.

Components are built by a factory rather than decorated at import time, so the container image
is chosen when a pipeline is built (`build_components(image)`, or `$INGOT_IMAGE` through
`image_from_env()`), never when this package is imported. Every component body imports `ingot`
inside itself: the body runs in the image (or, under kfp's local runner, in this environment),
and the logic it calls is unit-tested without kfp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingot.settings import DEFAULT_IMAGE, IMAGE_ENV  # noqa: F401 - re-exported for the CLI and tests


def image_from_env() -> str:
    """`$INGOT_IMAGE` when set and non-empty, else DEFAULT_IMAGE (read when called, not at import);
    set INGOT_IMAGE (or --image) when compiling or submitting to use another build."""
    from ingot import settings

    return settings.image()


@dataclass(frozen=True)
class Components:
    image: str
    build_data: Any
    ingest: Any
    train: Any
    evaluate: Any
    publish: Any
    register: Any
    reject: Any


def build_components(image: str | None = None) -> Components:
    """Every step as a kfp component running in `image` (default: `image_from_env()`)."""
    from components.build_data.component import build as build_build_data
    from components.evaluate.component import build as build_evaluate
    from components.ingest.component import build as build_ingest
    from components.publish.component import build as build_publish
    from components.register.component import build as build_register
    from components.reject.component import build as build_reject
    from components.train.component import build as build_train

    image = (image or "").strip() or image_from_env()
    return Components(
        image=image,
        build_data=build_build_data(image),
        ingest=build_ingest(image),
        train=build_train(image),
        evaluate=build_evaluate(image),
        publish=build_publish(image),
        register=build_register(image),
        reject=build_reject(image),
    )


def component_from(func: Any, image: str) -> Any:
    """A lightweight Python component over `func` in `image`, which already holds kfp and ingot
    (so nothing is pip-installed when the step starts)."""
    from kfp import dsl

    return dsl.component(base_image=image, install_kfp_package=False)(func)
