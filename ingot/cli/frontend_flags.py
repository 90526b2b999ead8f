"""The flags `ingot serve` and `ingot gateway` share: where to listen and the limits of the front
end both run (TF Serving's names where TF Serving has the flag, `Ingot:` in the help otherwise)."""

from __future__ import annotations

import argparse
from typing import Any

from ingot.errors import ConfigError


def add_listen_flags(add: Any) -> None:
    add("--port", type=int, default=8500, help="gRPC port (0 disables gRPC; default 8500)")
    add("--rest_api_port", type=int, default=8501, help="REST port (0 disables REST; default 8501)")
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in containers)")


def add_limit_flags(add: Any) -> None:
    add("--rest_api_timeout_in_ms", type=int, default=30000, help="per-request timeout for REST (default 30000)")
    add("--max_request_bytes", type=int, default=32 << 20, help="Ingot: largest REST body (default 32 MiB; 413 above)")
    add("--max_json_depth", type=int, default=32, help="Ingot: deepest JSON nesting accepted (default 32)")
    add("--max_tensor_elements", type=int, default=1 << 24, help="Ingot: most elements in one input tensor")
    add("--max_decoded_bytes", type=int, default=128 << 20,
        help="Ingot: most bytes one request's inputs may take once decoded, checked before a short "
        "TensorProto is expanded (strings: count x length; default 128 MiB; 400 above)")
    add("--max_batch_rows", type=int, default=1024,
        help="Ingot: most rows (first dimension) in one request (default 1024; 0: no limit; 400 above)")
    add("--max_image_pixels", type=int, default=50_000_000,
        help="Ingot: most pixels (declared width x height) of one JPEG/PNG/GIF/BMP in a string input, "
        "read from its header before anything decodes it (default 50000000; 0: no check; 400 above)")
    add("--http_header_timeout_seconds", type=float, default=10.0,
        help="Ingot: a REST request's headers must arrive within this after its first byte (default 10; 408)")
    add("--http_body_timeout_seconds", type=float, default=30.0,
        help="Ingot: a REST request's body must arrive within this (default 30; 408)")
    add("--http_idle_timeout_seconds", type=float, default=60.0,
        help="Ingot: close an idle keep-alive REST connection after this (default 60)")
    add("--parse_workers", type=int, default=2,
        help="Ingot: processes that decompress and parse large REST bodies off the event loop (default 2)")
    add("--shutdown_grace_seconds", type=float, default=30.0,
        help="Ingot: on SIGTERM, wait this long for in-flight requests (default 30)")
    add("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def check_listen(args: argparse.Namespace) -> None:
    for flag in ("port", "rest_api_port"):
        value = getattr(args, flag)
        if not 0 <= value <= 65535:
            raise ConfigError(f"--{flag}={value} is not a port number (0-65535)")
    if args.port and args.port == args.rest_api_port:
        raise ConfigError(f"--port and --rest_api_port must differ (both {args.port})")
    if not args.port and not args.rest_api_port:
        raise ConfigError("both APIs are disabled (--port=0 and --rest_api_port=0)")


def rest_timeout_s(args: argparse.Namespace) -> float | None:
    return args.rest_api_timeout_in_ms / 1000 if args.rest_api_timeout_in_ms > 0 else None


def request_limits(args: argparse.Namespace) -> Any:
    """The limit flags, checked, as the front end's RequestLimits."""
    from ingot.serving.frontend import RequestLimits

    for flag in ("max_request_bytes", "max_json_depth", "max_tensor_elements", "max_decoded_bytes",
                 "parse_workers", "http_header_timeout_seconds", "http_body_timeout_seconds",
                 "http_idle_timeout_seconds"):
        if getattr(args, flag) <= 0:
            raise ConfigError(f"--{flag} must be positive")
    for flag in ("max_batch_rows", "max_image_pixels"):
        if getattr(args, flag) < 0:
            raise ConfigError(f"--{flag} must be 0 (no limit) or positive")
    return RequestLimits(
        max_body_bytes=args.max_request_bytes,
        max_json_depth=args.max_json_depth,
        max_elements=args.max_tensor_elements,
        default_timeout_s=rest_timeout_s(args) or 30.0,
        max_decoded_bytes=args.max_decoded_bytes,
        max_batch_rows=args.max_batch_rows or None,
        max_image_pixels=args.max_image_pixels or None,
        header_timeout_s=args.http_header_timeout_seconds,
        body_timeout_s=args.http_body_timeout_seconds,
        idle_timeout_s=args.http_idle_timeout_seconds,
        parse_workers=args.parse_workers,
    )
