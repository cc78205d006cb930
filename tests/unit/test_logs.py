"""osmium.logs and the access line's fields: what configure_logging touches (osmium's loggers,
never the root logger), templates checked at start-up, JSON lines, --log-config files."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from osmium import asgi
from osmium.asgi import ABSENT, ACCESS_FIELDS, HTTPStream, access_fields, access_log
from osmium.config import Config, ConfigError
from osmium.logs import (
    OSMIUM_LOGGER,
    AccessLine,
    JSONFormatter,
    access_template,
    configure_logging,
    load_log_config,
)

HTTP2_SCOPE = {
    "client": ("::1", 8443),
    "raw_path": b"/items",
    "query_string": b"id=3",
    "http_version": "2",
}
#: The loggers configure_logging sets a level on.
TOUCHED = ("osmium", "osmium.access", "osmium.frames", "osmium.websocket", "hpack")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put back what configure_logging changes, so later tests (caplog) see logging as it was."""
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    osmium = logging.getLogger(OSMIUM_LOGGER)
    handlers, propagate = list(osmium.handlers), osmium.propagate
    levels = {name: logging.getLogger(name).level for name in TOUCHED}
    filters = list(access_log.filters)
    yield
    assert (root.level, root.handlers) == root_state, "the root logger was changed"
    osmium.handlers[:] = handlers
    osmium.propagate = propagate
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    access_log.filters[:] = filters
    asgi.time_requests(False)


def timed() -> bool:
    """Whether a request made now is timed for its access line."""
    return HTTPStream(None, 1, {"method": "GET"}).started_at > 0  # type: ignore[arg-type]


def record(message: object, level: int = logging.INFO, **attributes: object) -> logging.LogRecord:
    entry = logging.LogRecord("osmium.test", level, __file__, 1, message, (), None)
    entry.__dict__.update(attributes)
    return entry


# -- the access line's fields ---------------------------------------------------------------------


def test_access_fields_of_an_http2_request() -> None:
    fields = access_fields(HTTP2_SCOPE, "GET", 404, 9, 0.004127, 3)
    assert list(fields) == list(ACCESS_FIELDS)
    assert fields["client"] == "[::1]:8443"
    assert (fields["target"], fields["path"], fields["query"]) == ("/items?id=3", "/items", "id=3")
    assert (fields["protocol"], fields["status"], fields["reason"]) == ("HTTP/2", 404, "Not Found")
    assert (fields["bytes"], fields["stream"]) == (9, 3)
    assert (str(fields["duration_ms"]), fields["duration_ms"]) == ("4.13", 4.13)
    assert json.dumps(fields["duration_ms"]) == "4.13"


def test_access_fields_without_client_query_status_or_stream() -> None:
    scope = {"client": None, "raw_path": b"/\xff", "query_string": b"", "http_version": "1.1"}
    fields = access_fields(scope, "POST", None, 0, 2.0, 7)
    assert (fields["client"], fields["target"], fields["query"]) == ("-", "/\\xff", "")
    assert (fields["status"], fields["reason"], fields["stream"]) == (ABSENT, "", ABSENT)
    line = "{status} {status:>5} {status:d} {stream:03d}".format_map(fields)
    assert line == "- - - -"  # whatever the format spec: a template never fails on them
    assert f"{fields['duration_ms']}ms" == "2000.00ms"


# -- templates ------------------------------------------------------------------------------------


def test_a_template_of_known_fields_is_kept() -> None:
    template = "{client} {target} {status:>3} {duration_ms:.1f} {stream}"
    assert access_template(template) == template


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{user}", "access_log_format: unknown field {user}; fields: " + ", ".join(ACCESS_FIELDS)),
        ("{bytes:s}", "access_log_format '{bytes:s}': Unknown format code 's'"),
        ("{0}", "access_log_format '{0}': Format string contains positional fields"),
        ("{client", "access_log_format '{client': expected '}' before end of string"),
    ],
)
def test_a_bad_template_is_a_config_error(template: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        access_template(template)
    assert str(error.value).startswith(message)


def test_the_access_filter_renders_the_template_once_and_keeps_the_fields() -> None:
    fields = access_fields(HTTP2_SCOPE, "GET", 200, 12, 0.0005, 1)
    entry = record(fields)
    assert AccessLine("{method} {target} {status} {reason}").filter(entry)
    assert entry.getMessage() == "GET /items?id=3 200 OK"
    assert (entry.status, entry.duration_ms, entry.stream) == (200, 0.5, 1)  # type: ignore[attr-defined]
    assert AccessLine("{method}").filter(entry)  # already a line: left as it is
    assert entry.getMessage() == "GET /items?id=3 200 OK"


# -- JSON lines -----------------------------------------------------------------------------------


def test_a_json_line_has_stable_keys_and_the_traceback() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        entry = logging.LogRecord(
            "osmium.error", logging.ERROR, __file__, 1, "%s failed", ("it",), sys.exc_info()
        )
    document = json.loads(JSONFormatter().format(entry))
    assert list(document) == ["time", "level", "logger", "pid", "message", "exception"]
    assert (document["level"], document["logger"], document["message"]) == (
        "ERROR",
        "osmium.error",
        "it failed",
    )
    assert (
        document["exception"].startswith("Traceback")
        and "ValueError: bad value" in (document["exception"])
    )
    assert "\n" not in JSONFormatter().format(entry)


def test_a_json_access_line_has_the_fields_as_keys() -> None:
    fields = access_fields(HTTP2_SCOPE, "GET", 200, 12, 0.0005, 1)
    entry = record(fields)
    AccessLine("{client} {status}").filter(entry)
    document = json.loads(JSONFormatter().format(entry))
    assert document["message"] == "[::1]:8443 200"
    assert {name: document[name] for name in ACCESS_FIELDS} == fields
    http1 = record(access_fields({**HTTP2_SCOPE, "http_version": "1.1"}, "GET", None, 0, 0, 1))
    AccessLine("{status} {stream}").filter(http1)
    document = json.loads(JSONFormatter().format(http1))
    assert (document["message"], document["status"], document["stream"]) == ("- -", None, None)


# -- configure_logging ----------------------------------------------------------------------------


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize(
    ("log_level", "access", "access_level"),
    [
        ("info", True, logging.INFO),
        ("debug", True, logging.INFO),
        ("warning", True, logging.WARNING),
        ("info", False, logging.WARNING),
        ("error", False, logging.ERROR),
    ],
)
def test_only_osmiums_loggers_are_configured(
    log_level: str, access: bool, access_level: int
) -> None:
    config = Config(log_level=log_level, access_log=access)
    configure_logging(config)
    configure_logging(config)  # again: still one handler
    osmium = logging.getLogger(OSMIUM_LOGGER)
    assert [handler.get_name() for handler in osmium.handlers] == [OSMIUM_LOGGER]
    assert osmium.handlers[0].stream is sys.stderr  # type: ignore[attr-defined]
    assert not osmium.propagate
    assert osmium.level == logging.getLevelName(log_level.upper())
    assert access_log.level == access_level
    assert timed() == (access_level == logging.INFO)
    assert sum(isinstance(f, AccessLine) for f in access_log.filters) == 1


@pytest.mark.usefixtures("restored_logging")
def test_json_format_and_a_log_config_over_it(tmp_path: Path) -> None:
    config_file = tmp_path / "logging.json"
    config_file.write_text(
        json.dumps({"version": 1, "loggers": {"osmium.access": {"level": "ERROR"}}})
    )
    configure_logging(Config(log_format="json", log_config=str(config_file)))
    handler = logging.getLogger(OSMIUM_LOGGER).handlers[0]
    assert isinstance(handler.formatter, JSONFormatter)
    assert access_log.level == logging.ERROR
    assert not timed()  # the access log is off after all: requests are not timed
    assert not logging.getLogger("osmium.connection").disabled  # not named, still on


# -- --log-config files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.json", '{"version": 1, "root": {"level": "INFO"}}'),
        ("a.toml", 'version = 1\n[root]\nlevel = "INFO"\n'),
        ("a.yaml", "version: 1\nroot:\n  level: INFO\n"),
        ("a.YML", "version: 1\nroot:\n  level: INFO\n"),
    ],
)
def test_a_log_config_is_read_by_its_suffix(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert load_log_config(str(path)) == {"version": 1, "root": {"level": "INFO"}}


def test_yaml_without_pyyaml_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "logging.yaml"
    path.write_text("version: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` raises ImportError
    with pytest.raises(ConfigError, match=r"needs PyYAML: pip install 'osmium\[yaml\]'"):
        load_log_config(str(path))


def test_an_unreadable_log_config_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_log_config(str(tmp_path))  # a directory
    assert str(error.value) == f"log_config {tmp_path}: expected a .json, .toml, .yaml or .yml file"
    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(ConfigError, match=f"cannot read log_config file {folder}: "):
        load_log_config(str(folder))
