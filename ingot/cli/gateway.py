"""`ingot gateway`: TF Serving's REST and gRPC APIs in front of a champion and a challenger, with
weighted/sticky/pinned assignment, mirroring, an inference log and feedback labels."""

from __future__ import annotations

import argparse
from typing import Any

from ingot.cli.frontend_flags import add_limit_flags, add_listen_flags, check_listen, request_limits, rest_timeout_s
from ingot.errors import ConfigError
from ingot.protocol.headers import VARIANT
from ingot.protocol.routes import FEEDBACK_PATH


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "gateway", help="front door: split traffic between champion and challenger, log every prediction",
        description="Serve TensorFlow Serving's REST (default port 8501) and gRPC (8500) APIs for the model "
        "named in the routing table (--routes, re-read when it changes), forwarding each request to the "
        f"champion or the challenger model server: pinned by the {VARIANT} header, sticky by the "
        "table's caller header, else at random by weight; mirrored copies go to the challenger. Every "
        "predicted row is logged (--log-url, default $INGOT_LOG_URL, else the registry's database) and "
        f"POST {FEEDBACK_PATH} joins ground-truth labels to the variant that served the row. Binds "
        "127.0.0.1 unless --host is given.",
    )
    add = parser.add_argument
    add("--routes", required=True, help="routing table YAML (docs/gateway.md), re-read when it changes")
    add_listen_flags(add)
    add("--log-url", "--log_url", dest="log_url", default=None,
        help="inference log database URL (default $INGOT_LOG_URL, else the registry's: $INGOT_REGISTRY_URL "
        "or SQLite under the data directory)")
    add("--no-log", dest="log_enabled", action="store_false", help="keep no inference log (feedback is then off)")
    add("--cache-url", default=None,
        help="Redis URL of the prediction cache (default $INGOT_CACHE_URL; unset: no cache); models opt in "
        "with `cache:` in the routing table")
    add("--log-jsonl", default=None, help="also append every log row to this JSON-lines file")
    add("--log-queue-size", type=int, default=20_000,
        help="log records held while the database is slow or down; beyond it they are dropped and counted")
    add("--model_repository", "--model-repository", dest="model_repository", default=None,
        help="model repository whose model cards name each version's classes (checks feedback labels); "
        "without it class names are learned from the answers")
    add("--routes-poll-seconds", type=float, default=2.0, help="how often to check the routing table (default 2)")
    add("--upstream-timeout-seconds", type=float, default=30.0,
        help="deadline of a forwarded request when the caller sets none (default 30)")
    add_limit_flags(add)
    parser.set_defaults(handler=run)


def gateway_options(args: argparse.Namespace) -> Any:
    """Flags → GatewayOptions, checking the routing table and every number before binding anything."""
    from ingot.gateway.routing import load_routing_table
    from ingot.gateway.server import GatewayOptions

    load_routing_table(args.routes)  # a broken table stops here with its error
    check_listen(args)
    limits = request_limits(args)
    if args.log_queue_size < 1:
        raise ConfigError("--log-queue-size must be positive")
    if args.routes_poll_seconds <= 0 or args.upstream_timeout_seconds <= 0:
        raise ConfigError("--routes-poll-seconds and --upstream-timeout-seconds must be positive")
    if args.log_enabled and args.log_url:
        from ingot.db import normalize_url

        normalize_url(args.log_url, what="inference log URL")
    timeout_s = rest_timeout_s(args)
    from ingot import settings

    cache_url = args.cache_url if args.cache_url is not None else settings.cache_url()
    if cache_url and not cache_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"--cache-url: expected a redis://, rediss:// or unix:// URL, got {cache_url!r}")
    return GatewayOptions(
        cache_url=cache_url or None,
        routes=args.routes, host=args.host, grpc_port=args.port or None, rest_port=args.rest_api_port or None,
        log_enabled=args.log_enabled, log_url=args.log_url, log_jsonl=args.log_jsonl,
        log_queue_size=args.log_queue_size, model_repository=args.model_repository,
        routes_poll_s=args.routes_poll_seconds, upstream_timeout_s=args.upstream_timeout_seconds,
        limits=limits,
        rest_timeout_s=timeout_s, shutdown_grace_s=args.shutdown_grace_seconds,
    )


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ingot.gateway.server import run_gateway

    return run_gateway(gateway_options(args))
