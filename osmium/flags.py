"""`osmium serve`'s flags, grouped as --help shows them, each help line ending in its default.

Every flag's value stays None unless given, so that the environment and the config file can
fill in what the command line leaves out (osmium/sources.py); the defaults shown come from
Config itself and cannot drift from it.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from functools import cache
from typing import Any

from osmium.config import (
    DEMO_APP,
    HTTP_MODES,
    LIFESPAN_MODES,
    LOG_FORMATS,
    LOOPS,
    PROXY_PROTOCOL,
    Config,
)
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings
from osmium.tls import VERIFY_CLIENT

ON_OFF = argparse.BooleanOptionalAction


@cache
def _defaults() -> dict[str, Any]:
    """Every setting's default, flat, read from the dataclasses once for all the flags."""
    owners = (Config(), ProtocolSettings(), Limits())
    return {field.name: getattr(owner, field.name) for owner in owners for field in fields(owner)}


def default_of(setting: str) -> Any:
    return _defaults()[setting]


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple) and value:
        return ", ".join(str(item) for item in value)
    empty = value is None or (isinstance(value, tuple | dict | str) and not value)
    return "none" if empty else str(value)


class _Group:
    """An argument group whose flags' help gets "(default: ...)" from Config."""

    def __init__(self, parser: argparse.ArgumentParser, title: str) -> None:
        self._group = parser.add_argument_group(title)

    def flag(self, *names: str, help: str, **options: Any) -> None:
        action = self._group.add_argument(*names, default=None, help=help, **options)
        if "default" in help:
            return  # one that says it in words
        try:
            default = default_of(action.dest)
        except KeyError:
            return  # --config: not a setting itself
        action.help = f"{help} (default: {_shown(default)})".replace("%", "%%")


def _workers(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, not {value!r}") from None


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "app", nargs="?", default=None, help=f"module:attribute (default: {DEMO_APP})"
    )
    _app(_Group(parser, "the app"))
    _listening(_Group(parser, "listening"))
    _tls(_Group(parser, "TLS"))
    _workers_group(_Group(parser, "workers"))
    _responses(_Group(parser, "responses"))
    _proxy(_Group(parser, "behind a proxy (README: Behind a proxy)"))
    _limits(_Group(parser, "HTTP/2 settings and limits (README: Limits)"))
    _websockets(_Group(parser, "WebSockets"))
    _logging(_Group(parser, "logging (README: Logs)"))
    _admin(_Group(parser, "admin plane (README: Admin plane)"))


def _app(group: _Group) -> None:
    group.flag(
        "--factory", action="store_true", help="the app is a factory: serve what calling it returns"
    )
    group.flag(
        "--lifespan",
        choices=LIFESPAN_MODES,
        help="ASGI lifespan: auto (if the app speaks it), on, off",
    )
    group.flag("--config", metavar="FILE", help="osmium.toml settings file (also $OSMIUM_CONFIG)")
    group.flag("--env-file", metavar="FILE", help="KEY=VALUE lines added to the environment")
    group.flag("--reload", action="store_true", help="restart workers when a Python file changes")
    group.flag(
        "--reload-dir",
        action="append",
        dest="reload_dirs",
        metavar="DIR",
        help="watch DIR (repeatable); default: the working directory",
    )


def _listening(group: _Group) -> None:
    group.flag(
        "--bind",
        action="append",
        metavar="ADDRESS",
        help="HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N (repeatable)",
    )
    group.flag(
        "--host",
        metavar="HOST",
        help="with --port, the same as --bind HOST:PORT (default 127.0.0.1)",
    )
    group.flag(
        "--port",
        type=int,
        metavar="PORT",
        help="with --host, the same as --bind HOST:PORT (default 8000)",
    )
    group.flag(
        "--insecure-bind",
        action="append",
        metavar="ADDRESS",
        help="a listener that stays cleartext beside TLS ones (repeatable)",
    )
    group.flag(
        "--fd",
        action="append",
        type=int,
        metavar="N",
        help="serve the listening socket handed over as descriptor N",
    )
    group.flag("--uds-mode", metavar="MODE", help="file mode of unix sockets")
    group.flag("--backlog", type=int, metavar="N", help="pending connections the kernel queues")
    group.flag("--http", choices=HTTP_MODES, help="protocols: auto (HTTP/2 and HTTP/1.1), 1, 2")


def _tls(group: _Group) -> None:
    group.flag(
        "--certfile", "--ssl-certfile", metavar="FILE", help="PEM certificate chain: serve TLS"
    )
    group.flag("--keyfile", "--ssl-keyfile", metavar="FILE", help="PEM private key for --certfile")
    group.flag(
        "--keyfile-password",
        "--ssl-keyfile-password",
        metavar="PASSWORD",
        help="password of an encrypted key",
    )
    group.flag("--tls-backend", metavar="NAME", help="stdlib, pyopenssl, or package.module:Class")
    group.flag(
        "--sni",
        action="append",
        metavar="HOST=CERT,KEY",
        help="another certificate for clients asking for HOST (repeatable)",
    )
    group.flag(
        "--tls-ciphers",
        "--ssl-ciphers",
        metavar="CIPHERS",
        help="OpenSSL cipher string for TLS 1.2",
    )
    group.flag(
        "--ca-certs",
        "--ssl-ca-certs",
        metavar="FILE",
        help="PEM CA certificates client certificates must chain to",
    )
    group.flag(
        "--verify-client",
        choices=VERIFY_CLIENT,
        help="client certificates: none, optional, required",
    )


def _workers_group(group: _Group) -> None:
    group.flag(
        "--workers", type=_workers, metavar="N|auto", help="worker processes; auto: one per CPU"
    )
    group.flag(
        "--loop", choices=LOOPS, help="event loop: auto (uvloop if installed), asyncio, uvloop"
    )
    group.flag(
        "--worker-timeout", type=float, metavar="SECONDS", help="a silent worker is killed after it"
    )
    group.flag(
        "--max-requests", type=int, metavar="N", help="recycle a worker after N requests (0: never)"
    )
    group.flag(
        "--max-requests-jitter",
        type=int,
        metavar="N",
        help="up to N more, so workers recycle apart",
    )
    group.flag(
        "--max-active-handlers",
        type=int,
        metavar="N",
        help="app handlers a worker runs at once; the rest wait (0: no cap)",
    )
    group.flag(
        "--limit-concurrency",
        type=int,
        metavar="N",
        help="requests in flight per worker; past it 503 (0: off)",
    )
    group.flag(
        "--keep-alive-timeout",
        "--timeout-keep-alive",
        type=float,
        metavar="SECONDS",
        help="an idle connection is closed after it",
    )
    group.flag(
        "--graceful-timeout",
        "--timeout-graceful-shutdown",
        type=float,
        metavar="SECONDS",
        help="what streams in flight get on stop",
    )


def _responses(group: _Group) -> None:
    group.flag("--server-header", action=ON_OFF, help="'server: osmium' where the app sends none")
    group.flag(
        "--header",
        action="append",
        dest="headers",
        metavar="NAME:VALUE",
        help="a field every response gets unless the app sends it (repeatable)",
    )
    group.flag(
        "--max-request-body-size",
        type=int,
        metavar="BYTES",
        help="larger bodies get 413 (0: no limit)",
    )


def _proxy(group: _Group) -> None:
    group.flag(
        "--proxy-headers",
        action=ON_OFF,
        help="client, scheme, host from Forwarded / X-Forwarded-* of trusted peers",
    )
    group.flag(
        "--forwarded-allow-ips",
        metavar="IPS",
        help="trusted peers: IPs and CIDRs, comma-separated, or *",
    )
    group.flag(
        "--root-path", metavar="PATH", help="the prefix the app is mounted under (ASGI root_path)"
    )
    group.flag(
        "--proxy-protocol",
        choices=PROXY_PROTOCOL,
        help="every connection starts with a HAProxy PROXY header of this version",
    )


def _limits(group: _Group) -> None:
    for flag, text in (
        ("--max-concurrent-streams", "SETTINGS_MAX_CONCURRENT_STREAMS"),
        ("--initial-window-size", "per-stream receive window, bytes"),
        ("--connection-window-size", "connection receive window, bytes"),
        ("--max-frame-size", "SETTINGS_MAX_FRAME_SIZE, bytes"),
        ("--max-header-list-size", "SETTINGS_MAX_HEADER_LIST_SIZE, bytes"),
        ("--max-header-block-size", "HEADERS+CONTINUATION bytes"),
        ("--max-resets-per-second", "RST_STREAMs per connection per second"),
        ("--max-control-frames-per-second", "PING/SETTINGS/PRIORITY/... per second"),
        ("--max-ignored-frames-per-second", "late or unknown frames per second"),
        ("--max-connection-output", "unsent bytes per connection"),
        ("--max-worker-output", "unsent bytes per worker"),
        ("--max-pushes-per-request", "server pushes one request may make (0: off)"),
    ):
        group.flag(flag, type=int, metavar="N", help=text)
    for flag, text in (
        ("--handshake-timeout", "PROXY header, TLS handshake, HTTP/2 preface"),
        ("--header-timeout", "one request's header section"),
        ("--send-timeout", "a response blocked by an unread socket or a closed window"),
        ("--idle-ping", "silence from the peer before a PING (0: off)"),
        ("--ping-timeout", "wait for a PING's ACK before closing"),
    ):
        group.flag(flag, type=float, metavar="SECONDS", help=text)


def _websockets(group: _Group) -> None:
    group.flag(
        "--ws-max-message-size",
        type=int,
        metavar="BYTES",
        help="largest message; over it: Close 1009",
    )
    group.flag(
        "--ws-ping-interval", type=float, metavar="SECONDS", help="seconds between Pings (0: none)"
    )
    group.flag(
        "--ws-ping-timeout", type=float, metavar="SECONDS", help="no Pong within it: Close 1011"
    )
    group.flag(
        "--ws-per-message-deflate", action=ON_OFF, help="offer permessage-deflate compression"
    )


def _logging(group: _Group) -> None:
    group.flag("--access-log", action=ON_OFF, help="one line per request")
    group.flag("--access-log-format", metavar="TEMPLATE", help="the access line (README: Logs)")
    group.flag("--log-level", metavar="LEVEL", help="debug, info, warning, error, critical")
    group.flag("--log-format", choices=LOG_FORMATS, help="text, or json: one object per line")
    group.flag("--log-config", metavar="FILE", help="logging dictConfig file: JSON, TOML or YAML")
    group.flag("--debug-frames", action="store_true", help="log every HTTP/2 frame")


def _admin(group: _Group) -> None:
    group.flag(
        "--admin-bind",
        metavar="HOST:PORT|unix:PATH",
        help="serve the admin API, /metrics and the dashboard there (default: off)",
    )
    group.flag(
        "--admin-token",
        metavar="TOKEN",
        help="bearer token of the admin API (default: generated and logged)",
    )
    group.flag(
        "--admin-history", type=int, metavar="SECONDS", help="seconds of per-second history kept"
    )
