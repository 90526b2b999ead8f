"""`ingot serve`: Ingot's local TF-Serving-compatible model server.

The flags are TensorFlow Serving's (`--port`, `--rest_api_port`, `--model_name`,
`--model_base_path`, `--model_config_file`, `--enable_batching`, ...), so a command line or a
Kubernetes args list written for `tensorflow_model_server` works here too. The server binds
127.0.0.1 unless `--host` says otherwise (in a container use `--host 0.0.0.0`).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ingot.cli.frontend_flags import add_limit_flags, add_listen_flags, check_listen, request_limits, rest_timeout_s
from ingot.errors import ConfigError


def _bool(value: str) -> bool:
    from ingot.serving.config import parse_bool_flag

    try:
        return parse_bool_flag(value)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "serve", help="serve models over TF Serving's REST and gRPC APIs",
        description="Serve SavedModels from a model repository with TensorFlow Serving's REST "
        "(default port 8501) and gRPC (8500) APIs. Models come from --model_config_file (TF "
        "Serving's ModelServerConfig text format), from --model_name/--model_base_path, or, with "
        "neither, from every model in --model_repository. New versions are picked up while the "
        "old ones serve. Binds 127.0.0.1 unless --host is given (use 0.0.0.0 in a container).",
    )
    add = parser.add_argument
    add_listen_flags(add)
    add("--model_name", default="default", help="name of the model with --model_base_path (default 'default')")
    add("--model_base_path", default=None, help="directory holding the model's numeric versions")
    add("--model_config_file", default=None, help="ModelServerConfig text proto listing the models")
    add("--model_config_file_poll_wait_seconds", type=float, default=0.0,
        help="re-read --model_config_file this often (0: never)")
    add("--model_repository", default=None,
        help="Ingot: serve every model directory under this repository (default: $INGOT_MODEL_REPOSITORY "
        "or ./model-repository) when neither --model_config_file nor --model_base_path is given")
    add("--file_system_poll_wait_seconds", type=float, default=1.0,
        help="look for new model versions this often (0: only at start; default 1)")
    add("--enable_batching", type=_bool, nargs="?", const=True, default=False,
        help="batch concurrent requests into one model call")
    add("--batching_parameters_file", default=None, help="BatchingParameters text proto (TF Serving's format)")
    add("--enable_model_warmup", type=_bool, nargs="?", const=True, default=True,
        help="replay assets.extra/tf_serving_warmup_requests before a version serves (default true)")
    add("--num_request_iterations_for_warmup", type=int, default=1, help="replays of each warm-up record")
    add("--num_model_warmup_threads", type=int, default=2,
        help="signatures warmed up at once (TF Serving's ModelWarmupOptions; default 2: a signature's first "
        "call is mostly single-threaded graph optimisation, so two overlap)")
    add("--monitoring_config_file", default=None,
        help="MonitoringConfig text proto; without one, metrics are at /monitoring/prometheus/metrics")
    add("--max_num_load_retries", type=int, default=5, help="retries of a version that failed to load")
    add("--load_retry_interval_micros", type=int, default=60_000_000, help="wait between load retries")
    add("--rest_api_num_threads", type=int, default=None, help="accepted for compatibility; I/O is asynchronous")
    add("--grpc_max_threads", type=int, default=None, help="accepted for compatibility; I/O is asynchronous")
    add("--verify_manifests", type=_bool, nargs="?", const=True, default=True,
        help="Ingot: refuse a version whose files do not match its MANIFEST.sha256 (default true)")
    add("--allow_model_config_reload", type=_bool, nargs="?", const=True, default=False,
        help="Ingot: take ModelService/HandleReloadConfigRequest (default false: PERMISSION_DENIED); even "
        "then only from loopback callers and only for base paths under --model_repository or the "
        "configured models' base paths")
    add("--prefer_tflite_model", type=_bool, nargs="?", const=True, default=False,
        help="serve a version's int8 model.tflite (beside saved_model.pb) through LiteRT when it has one, "
        "with the same REST and gRPC API; versions without one serve their SavedModel (default false)")
    add("--num_tflite_pools", type=int, default=1, help="with --prefer_tflite_model: interpreter pools per version")
    add("--num_tflite_interpreters_per_pool", type=int, default=None,
        help="with --prefer_tflite_model: single-threaded LiteRT interpreters per pool, i.e. batches run at once "
        "(default: the number of CPUs)")
    add_limit_flags(add)
    parser.set_defaults(handler=run_serve)


def server_options(args: argparse.Namespace) -> Any:
    """Flags → ServerOptions, validating every file before anything is bound or loaded."""
    from ingot import settings
    from ingot.serving.config import (
        BatchingOptions,
        load_batching_parameters,
        load_model_server_config,
        load_monitoring_config,
        model_roots,
        repository_config,
        single_model_config,
    )
    from ingot.serving.manager import ManagerOptions
    from ingot.serving.server import ServerOptions

    if args.model_config_file and args.model_base_path:
        raise ConfigError("give either --model_config_file or --model_base_path, not both")
    repository = args.model_repository
    if args.model_config_file:
        config = load_model_server_config(args.model_config_file)
    elif args.model_base_path:
        config = single_model_config(args.model_name, args.model_base_path)
    else:
        repository = args.model_repository or settings.model_repository()
        config = repository_config(repository)
    roots = model_roots(config, repository)
    batching = None
    if args.batching_parameters_file and not args.enable_batching:
        raise ConfigError("--batching_parameters_file is set without --enable_batching=true")
    if args.enable_batching:
        batching = (
            load_batching_parameters(args.batching_parameters_file)
            if args.batching_parameters_file else BatchingOptions()
        )
    if args.num_model_warmup_threads < 1:
        raise ConfigError(f"--num_model_warmup_threads={args.num_model_warmup_threads} must be at least 1")
    for flag in ("num_tflite_pools", "num_tflite_interpreters_per_pool"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag}={value} must be at least 1")
    check_listen(args)
    limits = request_limits(args)
    timeout_s = rest_timeout_s(args)
    return ServerOptions(
        model_config=config,
        host=args.host,
        grpc_port=args.port or None,
        rest_port=args.rest_api_port or None,
        manager=ManagerOptions(
            batching=batching,
            enable_model_warmup=args.enable_model_warmup,
            warmup_iterations=max(1, args.num_request_iterations_for_warmup),
            warmup_threads=args.num_model_warmup_threads,
            file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
            max_num_load_retries=args.max_num_load_retries,
            load_retry_interval_s=args.load_retry_interval_micros / 1e6,
            max_elements=args.max_tensor_elements,
            verify_manifest=args.verify_manifests,
            direct_threads=max(2, os.cpu_count() or 1),
            prefer_tflite_model=args.prefer_tflite_model,
            tflite_interpreters=args.num_tflite_pools * (args.num_tflite_interpreters_per_pool or os.cpu_count() or 1),
        ),
        limits=limits,
        monitoring=load_monitoring_config(args.monitoring_config_file),
        rest_timeout_s=timeout_s,
        model_config_file=args.model_config_file,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        shutdown_grace_s=args.shutdown_grace_seconds,
        allow_model_config_reload=args.allow_model_config_reload,
        model_roots=roots,
    )


def try_commands(host: str, rest_port: int | None, grpc_port: int | None, model_names: list[str]) -> str:
    """The commands `ingot serve` prints so a newcomer can call the server at once."""
    from ingot.protocol.model_spec import ModelSpec

    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    name = model_names[0] if model_names else "MODEL"
    lines = ["Try:"]
    if rest_port:
        base = f"http://{shown}:{rest_port}"
        spec = ModelSpec(name)
        lines += [
            f"  curl {base}{spec.path()}",
            f"  curl {base}{spec.path('/metadata')}",
            f"  curl -X POST {base}{spec.path(':predict')} \\",
            "       -d '{\"signature_name\": \"serving_bytes\", \"instances\": [{\"b64\": \"'$(base64 -w0 IMAGE.png)'\"}]}'",
            f"  ingot predict --server {base} --model {name} IMAGE.png ...",
            f"  metrics: {base}/monitoring/prometheus/metrics   probes: {base}/healthz {base}/readyz",
        ]
    if grpc_port:
        lines.append(f"  ingot predict --server grpc://{shown}:{grpc_port} --model {name} IMAGE.png ...")
    return "\n".join(lines)


def run_serve(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter, not ours
    from ingot.serving.process import without_keras

    without_keras()  # SavedModels are served without Keras, as TF Serving does; 2 s off every cold start
    import logging

    logging.basicConfig(level=getattr(logging, args.log_level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = server_options(args)
    from ingot.serving.server import run_server

    names = [m.name for m in options.model_config.model_config_list.config]
    print(f"ingot serve: models {', '.join(names)}", flush=True)

    def banner(server: Any) -> str:
        return try_commands(options.host, server.rest_port, server.grpc_port, names)

    return run_server(options, banner=banner)
