"""`ingot gateway`: TF Serving's REST and gRPC APIs in front of a champion and a challenger, with
weighted/sticky/pinned assignment, mirroring, an inference log and feedback labels."""

from __future__ import annotations

import argparse
from typing import Any

from ingot.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "gateway", help="front door: split traffic between champion and challenger, log every prediction",
        description="Serve TensorFlow Serving's REST (default port 8501) and gRPC (8500) APIs for the model "
        "named in the routing table (--routes, re-read when it changes), forwarding each request to the "
        "champion or the challenger model server: pinned by the x-ingot-variant header, sticky by the "
        "table's caller header, else at random by weight; mirrored copies go to the challenger. Every "
        "predicted row is logged (--log-url, default $INGOT_LOG_URL, else the registry's database) and "
        "POST /v1/feedback joins ground-truth labels to the variant that served the row. Binds "
        "127.0.0.1 unless --host is given.",
    )
    add = parser.add_argument
    add("--routes", required=True, help="routing table YAML (docs/gateway.md), re-read when it changes")
    add("--port", type=int, default=8500, help="gRPC port (0 disables gRPC; default 8500)")
    add("--rest_api_port", type=int, default=8501, help="REST port (0 disables REST; default 8501)")
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in containers)")
    add("--log-url", "--log_url", dest="log_url", default=None,
        help="inference log database URL (default $INGOT_LOG_URL, else the registry's: $INGOT_REGISTRY_URL "
        "or SQLite under the data directory)")
    add("--no-log", dest="log_enabled", action="store_false", help="keep no inference log (feedback is then off)")
    add("--log-jsonl", default=None, help="also append every log row to this JSON-lines file")
    add("--log-queue-size", type=int, default=20_000,
        help="log records held while the database is slow or down; beyond it they are dropped and counted")
    add("--model_repository", "--model-repository", dest="model_repository", default=None,
        help="model repository whose model cards name each version's classes (checks feedback labels); "
        "without it class names are learned from the answers")
    add("--routes-poll-seconds", type=float, default=2.0, help="how often to check the routing table (default 2)")
    add("--upstream-timeout-seconds", type=float, default=30.0,
        help="deadline of a forwarded request when the caller sets none (default 30)")
    add("--rest_api_timeout_in_ms", type=int, default=30000, help="per-request timeout for REST (default 30000)")
    add("--max_request_bytes", type=int, default=32 << 20, help="largest REST body (default 32 MiB; 413 above)")
    add("--max_json_depth", type=int, default=32, help="deepest JSON nesting accepted (default 32)")
    add("--max_tensor_elements", type=int, default=1 << 24, help="most elements in one input tensor")
    add("--shutdown_grace_seconds", type=float, default=30.0,
        help="on SIGTERM, wait this long for in-flight requests (default 30)")
    add("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.set_defaults(handler=run)


def gateway_options(args: argparse.Namespace) -> Any:
    """Flags → GatewayOptions, checking the routing table and every number before binding anything."""
    from ingot.gateway.routing import load_routing_table
    from ingot.gateway.server import GatewayOptions
    from ingot.serving.frontend import RequestLimits

    load_routing_table(args.routes)  # a broken table stops here with its error
    for flag in ("port", "rest_api_port"):
        value = getattr(args, flag)
        if not 0 <= value <= 65535:
            raise ConfigError(f"--{flag}={value} is not a port number (0-65535)")
    if args.port and args.port == args.rest_api_port:
        raise ConfigError(f"--port and --rest_api_port must differ (both {args.port})")
    if not args.port and not args.rest_api_port:
        raise ConfigError("both APIs are disabled (--port=0 and --rest_api_port=0)")
    for flag in ("log_queue_size", "max_request_bytes", "max_json_depth", "max_tensor_elements"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-') if flag == 'log_queue_size' else flag} must be positive")
    if args.routes_poll_seconds <= 0 or args.upstream_timeout_seconds <= 0:
        raise ConfigError("--routes-poll-seconds and --upstream-timeout-seconds must be positive")
    if args.log_enabled and args.log_url:
        from ingot.registry.store import normalize_url

        normalize_url(args.log_url, what="inference log URL")
    timeout_s = args.rest_api_timeout_in_ms / 1000 if args.rest_api_timeout_in_ms > 0 else None
    return GatewayOptions(
        routes=args.routes, host=args.host, grpc_port=args.port or None, rest_port=args.rest_api_port or None,
        log_enabled=args.log_enabled, log_url=args.log_url, log_jsonl=args.log_jsonl,
        log_queue_size=args.log_queue_size, model_repository=args.model_repository,
        routes_poll_s=args.routes_poll_seconds, upstream_timeout_s=args.upstream_timeout_seconds,
        limits=RequestLimits(max_body_bytes=args.max_request_bytes, max_json_depth=args.max_json_depth,
                             max_elements=args.max_tensor_elements, default_timeout_s=timeout_s or 0.0),
        rest_timeout_s=timeout_s, shutdown_grace_s=args.shutdown_grace_seconds,
    )


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ingot.gateway.server import run_gateway

    return run_gateway(gateway_options(args))
