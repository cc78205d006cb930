"""`osmium top`: a live terminal view of a running server's admin API (workers, the busiest
connections, recent events), with keys to sort, select, ping and close a connection.

Only the command line lives here: cli.py builds this parser for every command, and `osmium serve`
should not pay for rich and http.client (~60 ms of imports) that only the view uses.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_ADMIN = "http://127.0.0.1:9100"
TOKEN_ENV = "OSMIUM_ADMIN_TOKEN"


def _interval(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected seconds above 0, not {value!r}")
    return seconds


def add_parser(commands: argparse._SubParsersAction) -> None:
    top = commands.add_parser("top", help="watch a running server through its admin API")
    top.add_argument(
        "--admin", default=DEFAULT_ADMIN, metavar="URL|unix:PATH",
        help=f"the server's --admin-bind, http://HOST:PORT or unix:/path (default {DEFAULT_ADMIN})",
    )  # fmt: skip
    top.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV),
        help=f"the server's --admin-token (default: ${TOKEN_ENV}; none needed on a unix socket)",
    )  # fmt: skip
    top.add_argument(
        "--interval", type=_interval, default=1.0, metavar="SECONDS",
        help="seconds between refreshes (default 1)",
    )  # fmt: skip


def run(arguments: argparse.Namespace) -> int:
    try:
        from osmium.admin.top_screen import watch
    except ModuleNotFoundError as missing:
        print(f"osmium top: needs {missing.name}: pip install 'osmium[top]'", file=sys.stderr)
        return 2
    return watch(arguments.admin, arguments.token, arguments.interval)
