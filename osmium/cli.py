"""`osmium [serve] [module:app]`, `osmium config`, `osmium top`: flags, the environment and the
config file become one Config; every error is one line.

Exit codes: 0 clean stop, 2 unusable configuration (address, certificate, app, flags),
3 the application's lifespan startup failed.
"""

from __future__ import annotations

import argparse
import difflib
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from osmium import __version__
from osmium.admin import top
from osmium.config import ConfigError, build_config
from osmium.flags import add_serve_flags
from osmium.logs import configure_logging
from osmium.sources import render, resolve

EXIT_CONFIG = 2
COMMANDS = ("serve", "config", "top")
#: Parsed by argparse but not settings.
NOT_SETTINGS = ("command",)


class _Parser(argparse.ArgumentParser):
    """argparse with whole option names only (`--header` must never become `--header-timeout`),
    and errors as the one-line `osmium: error: ...` every other error is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_CONFIG, f"osmium: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """--version on one line, as argparse's own would not keep it at a narrow terminal."""

    def __init__(self, option_strings: list[str], dest: str) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the versions and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(versions())
        parser.exit()


def versions() -> str:
    """osmium's version and those of what it runs on, as bug reports need them."""
    parts = []
    for package in ("h2", "h11", "websockets", "uvloop"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"osmium {__version__} ({', '.join(parts)}; {python})"


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _Parser(
        prog="osmium",
        description="A fast, correct HTTP/2 server for ASGI apps.",
        epilog="`osmium module:app` is short for `osmium serve module:app`. Every setting is "
        "also OSMIUM_<NAME> in the environment (OSMIUM_WORKERS=4) or NAME in --config FILE; "
        "a flag wins over the environment, which wins over the file.",
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    usage = "%(prog)s [module:app] [options]"
    serve = commands.add_parser(
        "serve", usage=usage, help="serve an ASGI app over HTTP/2 and HTTP/1.1"
    )
    add_serve_flags(serve)
    config = commands.add_parser(
        "config",
        usage=usage,
        help="print the settings `serve` would use with these flags, and their sources",
    )
    add_serve_flags(config)
    top.add_parser(commands)
    return parser, {"serve": serve, "config": config}


def parse(argv: list[str]) -> tuple[argparse.Namespace, dict[str, str]]:
    """The arguments, `serve` implied when the first one is an app or a flag of its (an unknown
    flag gets the nearest known one as a suggestion), and each setting's flag."""
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        argv = ["serve", *argv]
    parser, subparsers = build_parser()
    arguments, unknown = parser.parse_known_args(argv)
    if unknown:
        command = subparsers.get(arguments.command, parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}{_suggestion(command, unknown)}")
    return arguments, _flag_names(subparsers["serve"])


def _suggestion(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    known = list(parser._option_string_actions)
    for argument in unknown:
        match = difflib.get_close_matches(argument.split("=")[0], known, n=1, cutoff=0.6)
        if argument.startswith("--") and match:
            return f"; did you mean {match[0]}?"
    return ""


def _flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each setting's flag as --help shows it first, to say where a value came from."""
    return {
        action.dest: action.option_strings[0] if action.option_strings else action.dest
        for action in parser._actions
    }


def main(argv: list[str] | None = None) -> int:
    arguments, flag_names = parse(sys.argv[1:] if argv is None else argv)
    if arguments.command == "top":
        return top.run(arguments)
    flags = {
        name: value
        for name, value in vars(arguments).items()
        if value is not None and name not in NOT_SETTINGS
    }
    try:
        resolved = resolve(flags, flag_names, os.environ)
        config = build_config(resolved.settings)
        if arguments.command == "config":
            sys.stdout.write(render(config, resolved.sources))
            return 0
        configure_logging(config)
        from osmium.supervisor import Supervisor

        supervisor = Supervisor(config)
    except ConfigError as error:
        print(f"osmium: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return supervisor.run()
