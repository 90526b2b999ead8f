"""`ingot gateway`: TF Serving's REST and gRPC APIs in front of a champion and a challenger, with
weighted/sticky/pinned assignment, mirroring, an inference log and feedback labels."""

from __future__ import annotations

import argparse
from typing import Any

from ingot.cli.frontend_flags import add_limit_flags, add_listen_flags, check_listen, request_limits, rest_timeout_s
from ingot.errors import ConfigError
from ingot.protocol.headers import FEEDBACK_KEY, VARIANT
from ingot.protocol.routes import FEEDBACK_PATH
from ingot.settings import FEEDBACK_SECRET_FILE_ENV


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
    add("--cache-timeout-ms", type=float, default=20.0,
        help="Redis connect and call timeout of the prediction cache: past it a lookup is a miss, never a wait "
        "(default 20; a dead Redis refuses at once, and after 3 failures in a row the cache is not asked for 1 s)")
    add("--log-jsonl", default=None, help="also append every log row to this JSON-lines file")
    add("--log-queue-size", type=int, default=20_000,
        help="log records held while the database is slow or down; beyond it they are dropped and counted")
    add("--model_repository", "--model-repository", dest="model_repository", default=None,
        help="model repository whose model cards name each version's classes (checks feedback labels); "
        "without it class names are learned from the answers")
    add("--capture-url", "--capture_url", dest="capture_url", default=None,
        help="where sampled inputs are stored when the routing table sets capture.sample: a directory, s3:// or "
        "gs:// (default $INGOT_CAPTURE_URL, else ./.ingot/capture; docs/capture.md)")
    add("--routes-poll-seconds", type=float, default=2.0, help="how often to check the routing table (default 2)")
    add("--upstream-timeout-seconds", type=float, default=30.0,
        help="deadline of a forwarded request when the caller sets none (default 30)")
    add("--mirror-max-bytes", type=int, default=64 << 20,
        help="bytes all mirrored copies in flight may hold together (request and decoded inputs); "
        "copies beyond it are dropped and counted (default 64 MiB)")
    feedback = parser.add_argument_group("feedback and the log's database")
    feedback.add_argument(
        "--feedback-secret-file", default=None, metavar="FILE",
        help=f"secret (32+ bytes) the {FEEDBACK_KEY} of each answer is an HMAC under (default "
        f"${FEEDBACK_SECRET_FILE_ENV}; neither: a random one per process, so give every replica one shared file)")
    feedback.add_argument(
        "--require-feedback-token", action="store_true",
        help="refuse to start (and answer feedback 503) while the routing table names no feedback_token_file: for "
        "a gateway whose log a rollout or the drift monitor reads, where labels must come from trusted labellers")
    feedback.add_argument("--feedback-concurrency", type=int, default=16, metavar="N",
                          help="feedback requests waiting on the log at once; beyond it 503 at once (default 16)")
    feedback.add_argument("--label-wait-seconds", type=float, default=2.0, metavar="SECONDS",
                          help="how long a label for a row not yet written waits for it before 404 (default 2)")
    feedback.add_argument("--log-statement-timeout-ms", type=int, default=5000, metavar="MS",
                          help="PostgreSQL statement_timeout of the log's sessions (default 5000; 0: none)")
    feedback.add_argument("--log-lock-timeout-ms", type=int, default=2000, metavar="MS",
                          help="PostgreSQL lock_timeout of the log's sessions (default 2000; 0: none)")
    add_limit_flags(add)
    parser.set_defaults(handler=run)


def gateway_options(args: argparse.Namespace) -> Any:
    """Flags → GatewayOptions, checking the routing table and every number before binding anything."""
    from ingot.gateway.routing import check_token_files, load_routing_table
    from ingot.gateway.server import GatewayOptions

    table = load_routing_table(args.routes)  # a broken table or token file stops here with its error
    check_token_files(table)
    check_feedback_settings(args, table)
    check_listen(args)
    limits = request_limits(args)
    if args.log_queue_size < 1:
        raise ConfigError("--log-queue-size must be positive")
    if args.mirror_max_bytes < 0:
        raise ConfigError("--mirror-max-bytes must be 0 or more")
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
        cache_url=cache_url or None, cache_timeout_s=_cache_timeout_s(args.cache_timeout_ms),
        routes=args.routes, host=args.host, grpc_port=args.port or None, rest_port=args.rest_api_port or None,
        log_enabled=args.log_enabled, log_url=args.log_url, log_jsonl=args.log_jsonl,
        log_queue_size=args.log_queue_size, model_repository=args.model_repository,
        routes_poll_s=args.routes_poll_seconds, upstream_timeout_s=args.upstream_timeout_seconds,
        limits=limits, max_mirror_bytes=args.mirror_max_bytes, capture_url=args.capture_url,
        rest_timeout_s=timeout_s, shutdown_grace_s=args.shutdown_grace_seconds,
        feedback_secret_file=args.feedback_secret_file, require_feedback_token=args.require_feedback_token,
        feedback_max_in_flight=args.feedback_concurrency, label_wait_s=args.label_wait_seconds,
        log_statement_timeout_ms=args.log_statement_timeout_ms or None,
        log_lock_timeout_ms=args.log_lock_timeout_ms or None,
    )


def check_feedback_settings(args: argparse.Namespace, table: Any) -> None:
    """The feedback-key secret and the pin token file must be usable, and a required feedback token
    configured, before the gateway binds anything."""
    import os

    from ingot.gateway.keys import FeedbackKeys
    from ingot.storage import read_token_file

    FeedbackKeys.from_file(args.feedback_secret_file or os.environ.get(FEEDBACK_SECRET_FILE_ENV))
    if table.pin_token_file:
        read_token_file(table.pin_token_file, what="routing table pin_token_file")
    if args.require_feedback_token and not table.feedback_token_file:
        raise ConfigError("--require-feedback-token: the routing table names no feedback_token_file; a gateway whose "
                          "log a rollout or the drift monitor reads takes labels only from holders of the token")
    if args.feedback_concurrency < 1:
        raise ConfigError("--feedback-concurrency must be at least 1")
    if not 0 <= args.label_wait_seconds <= 30:
        raise ConfigError("--label-wait-seconds must be between 0 and 30")
    if args.log_statement_timeout_ms < 0 or args.log_lock_timeout_ms < 0:
        raise ConfigError("--log-statement-timeout-ms and --log-lock-timeout-ms must be 0 or more")


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ingot.gateway.server import run_gateway

    return run_gateway(gateway_options(args))


def _cache_timeout_s(value: float) -> float:
    if not 0 < value <= 10_000:
        raise ConfigError(f"--cache-timeout-ms: expected milliseconds in (0, 10000], got {value:g}")
    return value / 1000.0
