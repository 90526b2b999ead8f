"""`ingot predict --server URL [--model NAME] IMAGE...`: classify image files with a running
model server (Ingot's or TensorFlow Serving), one line per image: path, class, confidence."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ingot import settings
from ingot.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "predict", help="classify images with a running model server",
        description="Send image files (JPEG/PNG/GIF/BMP) to a model server's serving_bytes "
        "signature and print each image's class and confidence. Works with `ingot serve` and "
        "with TensorFlow Serving (REST or gRPC). Exits 1 when any image failed.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--server", default=settings.server(),
                        help=f"http://HOST:8501 (REST) or grpc://HOST:8500 (default ${settings.SERVER_ENV} or "
                        f"{settings.DEFAULT_SERVER})")
    parser.add_argument("--model", default=settings.model_name(),
                        help=f"model name (default ${settings.MODEL_NAME_ENV}; with Ingot's server, the only model "
                        "it serves)")
    parser.add_argument("--version", type=int, default=None, help="a specific model version")
    parser.add_argument("--label", default=None, help="a version label (e.g. stable, canary)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.set_defaults(handler=run_predict)


def pick_model(client: Any, requested: str | None) -> str:
    """The --model, or the single model an Ingot server lists; otherwise a clear error."""
    if requested:
        return requested
    from ingot.protocol.status import ServingError

    lister = getattr(client, "list_models", None)
    models: list[str] = []
    if lister is not None:
        try:
            models = [m["name"] for m in lister()]
        except ServingError:
            models = []
    if len(models) == 1:
        return models[0]
    if models:
        raise ConfigError(f"the server serves several models ({', '.join(models)}); choose one with --model")
    raise ConfigError("--model is required (this server does not list its models)")


def format_line(path: str, prediction: Any) -> str:
    """image, class, confidence; through a gateway also what `ingot feedback` needs later."""
    line = f"{path}\t{prediction.class_name}\t{prediction.confidence:.4f}"
    if prediction.request_id:
        line += (f"\trequest {prediction.request_id} row {prediction.row} "
                 f"({prediction.variant} v{prediction.model_version})")
        if prediction.feedback_key:
            line += f" key {prediction.feedback_key}"
    return line


def run_predict(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter, not ours
    from ingot.client import Client, ServingError, read_image_bytes
    from ingot.protocol.status import Code

    payloads: list[tuple[str, bytes]] = []
    failed = 0
    for path in args.images:
        try:
            payloads.append((path, read_image_bytes(path)))
        except ConfigError as err:
            print(f"ingot: error: {err}", file=sys.stderr)
            failed += 1
    if not payloads:
        return 1
    with Client.connect(args.server, timeout_s=args.timeout) as client:
        model = pick_model(client, args.model)
        kwargs = dict(model=model, version=args.version, label=args.label)
        try:
            results = list(zip(payloads, client.classify([data for _, data in payloads], **kwargs)))
        except ServingError as err:
            if err.code != Code.INVALID_ARGUMENT:
                raise  # server unreachable, unknown model...: one line from the CLI's main
            if len(payloads) == 1:
                print(f"ingot: error: {payloads[0][0]}: {err}", file=sys.stderr)
                return 1
            results = []  # one bad image fails the batch: classify one by one to name it
            for path, data in payloads:
                try:
                    results.append(((path, data), client.classify([data], **kwargs)[0]))
                except ServingError as single:
                    print(f"ingot: error: {path}: {single}", file=sys.stderr)
                    failed += 1
        for (path, _), prediction in results:
            if args.json:
                document = {
                    "image": path, "class_id": prediction.class_id, "class_name": prediction.class_name,
                    "confidence": round(prediction.confidence, 6),
                }
                if prediction.request_id:
                    document.update(request_id=prediction.request_id, row=prediction.row,
                                    variant=prediction.variant, model_version=prediction.model_version,
                                    feedback_key=prediction.feedback_key)
                print(json.dumps(document))
            else:
                print(format_line(path, prediction))
    return 1 if failed else 0

