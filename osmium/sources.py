"""Where each setting comes from: a flag over the environment over the config file over the
default. `osmium config` prints the outcome, each setting with its source.

Every setting NAME is also OSMIUM_NAME in the environment; platforms that run apps (Heroku,
Render, Cloud Run, ...) set WEB_CONCURRENCY (workers) and PORT (serve on 0.0.0.0:PORT), which
count as environment settings below OSMIUM_WORKERS and OSMIUM_BIND.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, fields
from typing import Any

from osmium.config import (
    LIMIT_FIELDS,
    PROTOCOL_FIELDS,
    SERVER_FIELDS,
    Config,
    ConfigError,
    load_file,
    relative_to,
    setting_type,
)

ENV_PREFIX = "OSMIUM_"
#: Settings `osmium config` shows masked.
SECRETS = frozenset({"keyfile_password", "admin_token"})
#: Names a flag, the environment or the file may set; "fd" is --fd, a listener like --bind.
SETTINGS = frozenset(SERVER_FIELDS | PROTOCOL_FIELDS | LIMIT_FIELDS | {"fd"})
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


@dataclass(frozen=True)
class Resolved:
    """Flat settings for `build_config`, and where each came from ("--bind", "OSMIUM_BIND",
    "PORT", "file osmium.toml"); a setting that is in neither is at its default."""

    settings: dict[str, Any]
    sources: dict[str, str]


def resolve(
    flags: Mapping[str, Any], flag_names: Mapping[str, str], environ: MutableMapping[str, str]
) -> Resolved:
    """`flags`: the settings given on the command line (plus "config", "host", "port");
    `flag_names`: each one's option string; `environ` gets the --env-file's variables."""
    flags = dict(flags)
    config_file = flags.pop("config", None) or environ.get(f"{ENV_PREFIX}CONFIG")
    host, port = flags.pop("host", None), flags.pop("port", None)
    if host is not None or port is not None:
        if "bind" in flags:
            raise ConfigError("--host/--port and --bind say the same thing: give one of them")
        flags["bind"] = [_host_port(host or DEFAULT_HOST, port or DEFAULT_PORT)]
        flag_names = {**flag_names, "bind": "--host/--port"}
    from_file = load_file(config_file) if config_file else {}
    env_file = flags.get("env_file") or environ.get(f"{ENV_PREFIX}ENV_FILE")
    env_file = env_file or from_file.get("env_file")
    if env_file:
        load_env_file(env_file, environ)
    from_env, env_sources = from_environment(environ)
    sources = dict.fromkeys(from_file, f"file {config_file}")
    sources.update(env_sources)
    sources.update({name: flag_names.get(name, name) for name in flags})
    # A path on the command line or in the environment is the working directory's: made whole,
    # so that `osmium config`'s output means the same wherever it is saved.
    here = os.getcwd()
    return Resolved(
        {**from_file, **relative_to(here, from_env), **relative_to(here, flags)}, sources
    )


def from_environment(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """OSMIUM_NAME for every setting NAME, then WEB_CONCURRENCY and PORT where those are unset."""
    settings: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, text in environ.items():
        if not key.startswith(ENV_PREFIX) or key in (
            f"{ENV_PREFIX}CONFIG",
            f"{ENV_PREFIX}ENV_FILE",
        ):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in SETTINGS:
            _check_near_miss(key)
            continue
        settings[name] = parse_env_value(name, text, key)
        sources[name] = key
    if "workers" not in settings and "WEB_CONCURRENCY" in environ:
        settings["workers"] = parse_env_value(
            "workers", environ["WEB_CONCURRENCY"], "WEB_CONCURRENCY"
        )
        sources["workers"] = "WEB_CONCURRENCY"
    if "bind" not in settings and "PORT" in environ:
        port = environ["PORT"]
        if not port.isdigit():
            raise ConfigError(f"PORT={port!r}: expected a port number")
        settings["bind"] = [f"0.0.0.0:{port}"]
        sources["bind"] = "PORT"
    return settings, sources


def parse_env_value(name: str, text: str, key: str) -> Any:
    """An environment string as the setting's type: true/false, numbers, strings as they are,
    lists as one item or a TOML array (`["a", "b"]`), tables as a TOML inline table."""
    if name == "fd":
        return [int(item) for item in _list(text, key, int)]
    kind = setting_type(name)
    if name == "workers" and text == "auto":
        return text
    if kind is bool:
        if text.lower() in TRUE | FALSE:
            return text.lower() in TRUE
        raise ConfigError(f"{key}={text!r}: expected true or false (1/0, yes/no, on/off)")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected a {kind.__name__}") from None
    if kind is tuple:
        return _list(text, key, str)
    if kind is dict:
        return _toml(text, key, dict)
    return text


def _list(text: str, key: str, item: type) -> list[Any]:
    """A TOML array, or one item (an IPv6 bind address starts with "[" too)."""
    if text.startswith("["):
        try:
            return _toml(text, key, list)
        except ConfigError:
            pass
    return [text] if item is str else [_int(text, key)]


def _int(text: str, key: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r}: expected a number") from None


def _toml(text: str, key: str, kind: type) -> Any:
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = None
    if not isinstance(value, kind):
        shape = "a TOML array" if kind is list else "a TOML inline table"
        raise ConfigError(f"{key}={text!r}: expected {shape}")
    return value


def _check_near_miss(key: str) -> None:
    """A typo in a setting's variable is an error (it would be ignored for good otherwise);
    other OSMIUM_ variables are not ours to judge."""
    known = [f"{ENV_PREFIX}{name.upper()}" for name in SETTINGS]
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.85)
    if match:
        raise ConfigError(f"{key} is not a setting: did you mean {match[0]}?")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def load_env_file(path: str, environ: MutableMapping[str, str]) -> None:
    """KEY=VALUE lines (dotenv syntax) into `environ`; variables already set win."""
    try:
        from dotenv import dotenv_values
    except ImportError:
        raise ConfigError("--env-file needs python-dotenv: pip install 'osmium[dotenv]'") from None
    if not os.path.isfile(path):
        raise ConfigError(f"env file {path} not found")
    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read env file {path}: {error}") from None
    for key, value in values.items():
        if value is not None:
            environ.setdefault(key, value)


def render(config: Config, sources: Mapping[str, str]) -> str:
    """The settings as a config file would give them, with where each came from."""
    lines = ["# the settings `osmium serve` runs with, and where each comes from", "[server]"]
    for name, value in _flat(config).items():
        source = sources.get(name, "default")
        if value is None:
            lines.append(f"# {name} =  # not set ({source})")
        else:
            text = '"***"' if name in SECRETS else _toml_value(name, value)
            lines.append(f"{name} = {text}  # {source}")
    return "\n".join(lines) + "\n"


def _flat(config: Config) -> dict[str, Any]:
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    nested = {"protocol": values.pop("protocol"), "limits": values.pop("limits")}
    for owner in nested.values():
        values.update({f.name: getattr(owner, f.name) for f in fields(owner)})
    return values


def _toml_value(name: str, value: Any) -> str:
    if name == "headers":
        return _toml_value("", [f"{field}:{text}" for field, text in value])
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, dict):
        return (
            "{ "
            + ", ".join(f"{json.dumps(k)} = {_toml_value('', v)}" for k, v in value.items())
            + " }"
        )
    return "[" + ", ".join(_toml_value("", item) for item in value) + "]"
