"""`ingot feedback REQUEST_ID LABEL`: send a ground-truth label for a prediction to the gateway."""

from __future__ import annotations

import argparse

from ingot import settings
from ingot.errors import ConfigError
from ingot.protocol.headers import FEEDBACK_KEY, REQUEST_ID
from ingot.protocol.routes import FEEDBACK_PATH
from ingot.settings import DEFAULT_SERVER, FEEDBACK_TOKEN_ENV, GATEWAY_ENV


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "feedback", help="send the true label of a logged prediction to the gateway",
        description=f"POST {FEEDBACK_PATH} to an `ingot gateway`: the label (a class name or id) of row ROW of "
        f"the prediction whose {REQUEST_ID} is REQUEST_ID. It is joined to the variant and model "
        "version that served that row. Repeating the same label is fine; a different one is refused.",
    )
    parser.add_argument("request_id", metavar="REQUEST_ID", help=f"the {REQUEST_ID} of the prediction")
    parser.add_argument("label", metavar="LABEL", help="the true class: its name or its id")
    parser.add_argument("--row", type=int, default=0, help="row of the request (default 0)")
    parser.add_argument("--key", default=None, metavar="FEEDBACK_KEY",
                        help=f"the answer's {FEEDBACK_KEY} (what `ingot predict` prints); not needed with the token")
    parser.add_argument("--gateway", default=None,
                        help=f"gateway REST URL (default ${GATEWAY_ENV}, else {DEFAULT_SERVER})")
    parser.add_argument("--token-file", default=None,
                        help=f"file holding the feedback bearer token (default: ${FEEDBACK_TOKEN_ENV} if set)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ingot.client.feedback import send_feedback

    token = settings.feedback_token()
    if args.token_file:
        from ingot.storage import read_token_file

        token = read_token_file(args.token_file, what="--token-file")
    if args.row < 0:
        raise ConfigError(f"--row must be a non-negative integer, got {args.row}")
    url = args.gateway or settings.gateway()
    if not token and not args.key:
        raise ConfigError(f"give the answer's {FEEDBACK_KEY} with --key, or the feedback token with --token-file "
                          f"(or ${FEEDBACK_TOKEN_ENV})")
    [stored] = send_feedback(url, args.request_id, args.label, row=args.row, token=token, feedback_key=args.key,
                             timeout_s=args.timeout)
    verdict = "correct" if stored["correct"] else "incorrect"
    again = "" if stored["created"] else " (already recorded)"
    print(f"{stored['request_id']} row {stored['row']}: label {stored['label_name']!r} ({verdict}) for "
          f"{stored['variant']} version {stored['model_version']}{again}")
    return 0
