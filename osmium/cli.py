"""`osmium serve [module:app]`: flags and the config file become one Config; errors are one line.

Exit codes: 0 clean stop, 2 unusable configuration (address, certificate, app, flags),
3 the application's lifespan startup failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from osmium import __version__
from osmium.admin import top
from osmium.config import DEMO_APP, PROXY_PROTOCOL, ConfigError, build_config, load_file

EXIT_CONFIG = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are the one-line `osmium: error: ...` every other error uses."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(
            EXIT_CONFIG, f"osmium: error: {message} (see osmium {self.prog.split()[-1]} --help)\n"
        )


def _workers(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, not {value!r}") from None


def _protocol_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("HTTP/2 settings and limits (README: Limits)")
    for flag, help_text in (
        ("--max-concurrent-streams", "SETTINGS_MAX_CONCURRENT_STREAMS (default 100)"),
        ("--initial-window-size", "per-stream receive window, bytes (default 262144)"),
        ("--connection-window-size", "connection receive window, bytes (default 1048576)"),
        ("--max-frame-size", "SETTINGS_MAX_FRAME_SIZE, bytes (default 16384)"),
        ("--max-header-list-size", "SETTINGS_MAX_HEADER_LIST_SIZE, bytes (default 65536)"),
        ("--max-header-block-size", "HEADERS+CONTINUATION bytes (default 98304)"),
        ("--max-resets-per-second", "RST_STREAMs per connection per second (default 200)"),
        ("--max-control-frames-per-second", "PING/SETTINGS/PRIORITY/... (default 500)"),
        ("--max-ignored-frames-per-second", "late or unknown frames (default 1000)"),
        ("--max-connection-output", "unsent bytes per connection (default 524288)"),
        ("--max-worker-output", "unsent bytes per worker (default 67108864)"),
        ("--max-pushes-per-request", "server pushes one request may make (default 8; 0: off)"),
    ):
        group.add_argument(flag, type=int, default=None, metavar="N", help=help_text)
    for flag, help_text in (
        ("--handshake-timeout", "TLS handshake and HTTP/2 preface (default 10)"),
        ("--header-timeout", "one request's header section (default 10)"),
        ("--send-timeout", "response blocked by an unread socket or closed window (default 30)"),
        ("--idle-ping", "silence from the peer before a PING (default 30; 0: off)"),
        ("--ping-timeout", "wait for a PING's ACK before closing (default 10)"),
    ):
        group.add_argument(flag, type=float, default=None, metavar="SECONDS", help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="osmium", description="A fast, correct HTTP/2 server for ASGI apps.")
    parser.add_argument("--version", action="version", version=f"osmium {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = commands.add_parser("serve", help="serve an ASGI app over HTTP/2")
    serve.add_argument(
        "app", nargs="?", default=None, help=f"module:attribute (default {DEMO_APP})"
    )
    serve.add_argument(
        "--factory", action="store_true", default=None,
        help="the app is a factory: call it with no arguments and serve what it returns",
    )  # fmt: skip
    serve.add_argument(
        "--bind", action="append", default=None, metavar="ADDRESS",
        help="HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N (repeatable: several listeners); "
        "default 127.0.0.1:8000",
    )  # fmt: skip
    serve.add_argument(
        "--insecure-bind", action="append", default=None, metavar="ADDRESS",
        help="a listener that stays cleartext when --certfile makes the others TLS (repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--fd", action="append", type=int, default=None, metavar="N",
        help="serve a listening socket handed over as descriptor N (systemd socket activation)",
    )  # fmt: skip
    serve.add_argument(
        "--uds-mode", default=None, metavar="MODE", help="file mode of unix sockets (default 0660)"
    )
    serve.add_argument("--certfile", default=None, help="PEM certificate chain: serve TLS")
    serve.add_argument("--keyfile", default=None, help="PEM private key for --certfile")
    serve.add_argument("--keyfile-password", default=None, help="password of an encrypted key")
    serve.add_argument(
        "--tls-backend", default=None, metavar="NAME",
        help="stdlib (default), pyopenssl, or package.module:Class",
    )  # fmt: skip
    serve.add_argument(
        "--sni", action="append", default=None, metavar="HOST=CERT,KEY",
        help="another certificate for clients asking for HOST (repeatable)",
    )  # fmt: skip
    serve.add_argument("--tls-ciphers", default=None, metavar="CIPHERS", help="TLS 1.2 ciphers")
    serve.add_argument(
        "--ca-certs", default=None, metavar="FILE",
        help="PEM CA certificates that client certificates must chain to",
    )  # fmt: skip
    serve.add_argument(
        "--http", default=None, choices=("auto", "1", "2"),
        help="protocols: auto (HTTP/2 and HTTP/1.1, default), 1 (HTTP/1.1 only), 2 (HTTP/2 only)",
    )  # fmt: skip
    serve.add_argument(
        "--verify-client", default=None, choices=("none", "optional", "required"),
        help="client certificates: not asked for (default), optional, or required",
    )  # fmt: skip
    serve.add_argument("--config", default=None, metavar="FILE", help="osmium.toml settings file")
    serve.add_argument("--keep-alive-timeout", type=float, default=None, metavar="SECONDS")
    serve.add_argument("--graceful-timeout", type=float, default=None, metavar="SECONDS")
    serve.add_argument("--backlog", type=int, default=None, metavar="N")
    workers = serve.add_argument_group("worker processes")
    workers.add_argument(
        "--workers", type=_workers, default=None, metavar="N|auto", help="default 1; auto: CPUs"
    )
    workers.add_argument("--worker-timeout", type=float, default=None, metavar="SECONDS")
    workers.add_argument("--max-requests", type=int, default=None, metavar="N")
    workers.add_argument("--max-requests-jitter", type=int, default=None, metavar="N")
    workers.add_argument(
        "--max-active-handlers", type=int, default=None, metavar="N",
        help="app handlers a worker runs at once; the rest wait their turn (default 0: no cap)",
    )  # fmt: skip
    workers.add_argument(
        "--limit-concurrency", type=int, default=None, metavar="N",
        help="requests and WebSockets in flight per worker; past it: 503 at once (default 0: off)",
    )  # fmt: skip
    responses = serve.add_argument_group("responses")
    responses.add_argument(
        "--server-header", action=argparse.BooleanOptionalAction, default=None,
        help="send 'server: osmium' where the app sends no server field (default on)",
    )  # fmt: skip
    responses.add_argument(
        "--header", action="append", default=None, dest="headers", metavar="NAME:VALUE",
        help="a field every response gets unless the app sends that name (repeatable)",
    )  # fmt: skip
    responses.add_argument(
        "--max-request-body-size", type=int, default=None, metavar="BYTES",
        help="larger request bodies get 413; the app sees no more (default 0: no limit)",
    )  # fmt: skip
    proxy = serve.add_argument_group("behind a proxy (README: Behind a proxy)")
    proxy.add_argument(
        "--proxy-headers", action=argparse.BooleanOptionalAction, default=None,
        help="client, scheme, host from Forwarded / X-Forwarded-* of trusted peers (default off)",
    )  # fmt: skip
    proxy.add_argument(
        "--forwarded-allow-ips", default=None, metavar="IPS",
        help="trusted peers: IPs and CIDRs, comma-separated, or * (default 127.0.0.1)",
    )  # fmt: skip
    proxy.add_argument(
        "--proxy-protocol", default=None, choices=PROXY_PROTOCOL,
        help="every connection starts with a HAProxy PROXY header of this version (default off)",
    )  # fmt: skip
    proxy.add_argument(
        "--root-path", default=None, metavar="PATH",
        help="the prefix the app is mounted under, e.g. /api: ASGI root_path (default none)",
    )  # fmt: skip
    admin = serve.add_argument_group("admin plane (README: Admin plane)")
    admin.add_argument(
        "--admin-bind", default=None, metavar="HOST:PORT|unix:PATH",
        help="serve the admin API, /metrics and the dashboard there (default: off)",
    )  # fmt: skip
    admin.add_argument(
        "--admin-token", default=None, metavar="TOKEN",
        help="bearer token of the admin API (default: generated and logged at start-up)",
    )  # fmt: skip
    admin.add_argument(
        "--admin-history", type=int, default=None, metavar="SECONDS",
        help="seconds of per-second history kept (default 3600)",
    )  # fmt: skip
    websocket = serve.add_argument_group("WebSockets")
    websocket.add_argument(
        "--ws-max-message-size", type=int, default=None, metavar="BYTES",
        help="largest message; over it: Close 1009 (default 16777216)",
    )  # fmt: skip
    websocket.add_argument(
        "--ws-ping-interval", type=float, default=None, metavar="SECONDS",
        help="seconds between Pings (default 20; 0: none)",
    )  # fmt: skip
    websocket.add_argument(
        "--ws-ping-timeout", type=float, default=None, metavar="SECONDS",
        help="no Pong within it: Close 1011 (default 20)",
    )  # fmt: skip
    websocket.add_argument(
        "--ws-per-message-deflate", action=argparse.BooleanOptionalAction, default=None,
        help="offer permessage-deflate compression (default on)",
    )  # fmt: skip
    serve.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default=None)
    serve.add_argument("--access-log", action="store_true", default=None, help="log every request")
    serve.add_argument("--log-level", default=None, help="debug, info, warning, error")
    serve.add_argument("--debug-frames", action="store_true", default=None, help="log every frame")
    _protocol_flags(serve)
    top.add_parser(commands)
    return parser


def _settings_from(arguments: argparse.Namespace) -> dict[str, Any]:
    """File settings first, flags given on the command line over them."""
    settings = load_file(arguments.config) if arguments.config else {}
    flags = {
        name: value
        for name, value in vars(arguments).items()
        if value is not None and name not in ("command", "config")
    }
    return {**settings, **flags}


def _configure_logging(level: str, access_log: bool, debug_frames: bool) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("osmium.access").setLevel(logging.INFO if access_log else logging.WARNING)
    if debug_frames:
        logging.getLogger("osmium.frames").setLevel(logging.DEBUG)
    # hpack logs every header at debug level; frame-level detail is what --debug-frames is for.
    logging.getLogger("hpack").setLevel(logging.WARNING)
    # The WebSocket core logs each closed WebSocket at info level: noise at any volume.
    logging.getLogger("osmium.websocket").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.command == "top":
        return top.run(arguments)
    try:
        config = build_config(_settings_from(arguments))
        _configure_logging(config.log_level, config.access_log, config.debug_frames)
        from osmium.supervisor import Supervisor

        supervisor = Supervisor(config)
    except ConfigError as error:
        print(f"osmium: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return supervisor.run()
