"""osmium's logging: its own loggers only, never the root logger an app may have configured.

One stderr handler on the `osmium` logger (text or JSON lines), the access line rendered from
--access-log-format, then a --log-config file (logging.config.dictConfig) over all of it.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
import tomllib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from osmium.asgi import ABSENT, ACCESS_FIELDS, access_fields, access_log, time_requests
from osmium.config import Config, ConfigError

#: Every osmium logger is this one or below it (osmium.access, osmium.error, ...).
OSMIUM_LOGGER = "osmium"
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
#: What an access template is tried on at start-up: an HTTP/2 request, and an HTTP/1.1 one
#: with no client address, no response and no stream.
_HTTP2_SCOPE = {
    "client": ("127.0.0.1", 51234),
    "raw_path": b"/items",
    "query_string": b"id=3",
    "http_version": "2",
}
_HTTP1_SCOPE = {"client": None, "raw_path": b"/", "query_string": b"", "http_version": "1.1"}
_SAMPLES = (
    access_fields(_HTTP2_SCOPE, "GET", 200, 12, 0.00041, 3),
    access_fields(_HTTP1_SCOPE, "GET", None, 0, 0.0, None),
)
YAML_HINT = "pip install 'osmium[yaml]'"


class AccessLine(logging.Filter):
    """Makes an osmium.asgi access record (its message: the fields) the line the template says;
    the fields also become the record's attributes, for the JSON lines and for a --log-config
    formatter's `%(status)s`."""

    def __init__(self, template: str) -> None:
        super().__init__()
        self.template = template

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.msg
        if type(fields) is dict:
            record.msg = self.template.format_map(fields)
            record.__dict__.update(fields)
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line, with the same keys every time, for log shippers (README: Logs);
    usable in a --log-config file as `{"()": "osmium.logs.JSONFormatter"}`."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created).astimezone()
        document: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        attributes = record.__dict__
        for name in ACCESS_FIELDS:
            if name in attributes:
                value = attributes[name]
                document[name] = None if value is ABSENT else value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=str)


def configure_logging(config: Config) -> None:
    """osmium's loggers as the settings say, then --log-config over them. The root logger is
    left alone: an app's own logging set-up keeps its handlers and format. Called once, before
    the workers fork (they inherit it); a second call replaces what the first set up."""
    template = access_template(config.access_log_format)
    level = logging.getLevelNamesMapping()[config.log_level.upper()]
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(OSMIUM_LOGGER)
    json_lines = config.log_format == "json"
    handler.setFormatter(JSONFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logger = logging.getLogger(OSMIUM_LOGGER)
    for old in [h for h in logger.handlers if h.get_name() == OSMIUM_LOGGER]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    # Access lines are info records: on with the access log, at --log-level info or debug.
    access_log.setLevel(max(level, logging.INFO if config.access_log else logging.WARNING))
    for old in [f for f in access_log.filters if isinstance(f, AccessLine)]:
        access_log.removeFilter(old)
    access_log.addFilter(AccessLine(template))
    frames = logging.DEBUG if config.debug_frames else logging.NOTSET
    logging.getLogger("osmium.frames").setLevel(frames)
    # hpack logs every header at debug level; frame-level detail is what --debug-frames is for.
    logging.getLogger("hpack").setLevel(logging.WARNING)
    # The WebSocket core logs each closed WebSocket at info level: noise at any volume.
    logging.getLogger("osmium.websocket").setLevel(logging.WARNING)
    if config.log_config is not None:
        apply_log_config(config.log_config)
    # Asked once here, not per request: an app may still silence osmium.access, not turn it on.
    time_requests(access_log.isEnabledFor(logging.INFO))


def access_template(template: str) -> str:
    """`template` once it renders every kind of access line; else a ConfigError saying why (a
    failure later would be one per request)."""
    try:
        for sample in _SAMPLES:
            template.format_map(sample)
    except KeyError as error:
        fields = ", ".join(ACCESS_FIELDS)
        raise ConfigError(
            f"access_log_format: unknown field {{{error.args[0]}}}; fields: {fields}"
        ) from None
    except (ValueError, IndexError, AttributeError, TypeError) as error:
        raise ConfigError(f"access_log_format {template!r}: {error}") from None
    return template


def _load_yaml(file: IO[bytes]) -> Any:
    import yaml  # optional: osmium[yaml]

    return yaml.safe_load(file)


#: A --log-config file's parser and its format's name, by suffix.
_PARSERS: dict[str, tuple[Callable[[IO[bytes]], Any], str]] = {
    ".json": (json.load, "JSON"),
    ".toml": (tomllib.load, "TOML"),
    ".yaml": (_load_yaml, "YAML"),
    ".yml": (_load_yaml, "YAML"),
}


def _one_line(error: BaseException) -> str:
    """An error and its cause (dictConfig wraps the useful part as the cause) on one line."""
    text = str(error)
    if error.__cause__ is not None:
        text = f"{text}: {error.__cause__}"
    return " ".join(text.split())


def load_log_config(path: str) -> dict[str, Any]:
    """The dictConfig settings in `path`, read by its suffix; a ConfigError naming the file."""
    suffix = Path(path).suffix.lower()
    if suffix not in _PARSERS:
        raise ConfigError(f"log_config {path}: expected a .json, .toml, .yaml or .yml file")
    parse, kind = _PARSERS[suffix]
    try:
        with open(path, "rb") as file:
            document = parse(file)
    except FileNotFoundError:
        raise ConfigError(f"log_config file {path} not found") from None
    except OSError as error:
        raise ConfigError(f"cannot read log_config file {path}: {error.strerror}") from None
    except ImportError:
        raise ConfigError(f"log_config {path} is YAML, which needs PyYAML: {YAML_HINT}") from None
    except Exception as error:  # each parser has its own error type: JSON, TOML, YAML
        problem = _one_line(error)
        raise ConfigError(f"log_config file {path} is not valid {kind}: {problem}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"log_config file {path}: expected a table of dictConfig settings")
    return document


def apply_log_config(path: str) -> None:
    """The file's logging.config.dictConfig settings, over osmium's own. Loggers it does not
    name keep working (disable_existing_loggers defaults to false here, not true)."""
    settings = load_log_config(path)
    settings.setdefault("disable_existing_loggers", False)
    try:
        logging.config.dictConfig(settings)
    except Exception as error:  # dictConfig runs the file's own handler and filter classes
        raise ConfigError(f"log_config {path}: {_one_line(error)}") from None
