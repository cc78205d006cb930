"""osmium's logs as an operator reads them: access lines, JSON lines, --log-config, the app's own
logging left alone, and errors that name their request."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from wsproto.events import CloseConnection, TextMessage

from osmium.asgi import ACCESS_FIELDS, INTERNAL_ERROR_BODY
from tests.integration.apps.websocket_apps import DENY_BODY
from tests.integration.support import REPO_ROOT, h2c_client, run_osmium
from tests.integration.test_cli import assert_one_line_error
from tests.server_process import ServerProcess, running_server
from tests.support.h2_websocket import H2WebSocketClient

ASGI_APPS = "tests.integration.apps.asgi_apps:app"
WEBSOCKET_APPS = "tests.integration.apps.websocket_apps:app"
#: An access line in the default text format (ACCESS_LOG_FORMAT).
ACCESS_LINE = re.compile(
    r"INFO osmium\.access: (?P<client>\S+) - "
    r'"(?P<method>\S+) (?P<target>\S+) (?P<protocol>HTTP/[\d.]+)" '
    r"(?P<status>\d{3}) (?P<reason>.*) (?P<bytes>\d+) (?P<duration_ms>\d+\.\d\d)ms$"
)
#: JSON `time`: ISO 8601 with milliseconds and the UTC offset.
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")
JSON_KEYS = {"time", "level", "logger", "pid", "message"}


def access_lines(server: ServerProcess) -> list[dict[str, str]]:
    return [match.groupdict() for line in server.lines if (match := ACCESS_LINE.search(line))]


def wait_for_access(server: ServerProcess, method: str, target: str) -> dict[str, str]:
    """The access line of `method target`, once it is written."""
    server.wait_for_line(rf'osmium\.access: .*"{re.escape(method)} {re.escape(target)} ')
    return next(
        fields
        for fields in access_lines(server)
        if (fields["method"], fields["target"]) == (method, target)
    )


def stop_and_drain(server: ServerProcess) -> None:
    """Stop the server and read its output to the end: the acceptor's last line comes after
    every worker exited, so whatever a worker logged is in `server.lines` then."""
    assert server.stop() == 0, server.output
    server.wait_for_line(r"stopped after \d+ requests")


def serve(*args: str, env: dict[str, str] | None = None) -> str:
    """The one error line of a start-up that must fail."""
    result = run_osmium("serve", "--bind", "127.0.0.1:0", *args, env=env)
    return assert_one_line_error(result)


# -- the access line ------------------------------------------------------------------------------


def test_an_http1_request_has_every_field_of_the_default_line() -> None:
    with running_server() as server, httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.get("/big", params={"size": 1000, "tag": "a b"})
        missing = client.get("/missing")
        assert response.http_version == "HTTP/1.1"
        line = wait_for_access(server, "GET", "/big?size=1000&tag=a+b")
        host, port = line["client"].rsplit(":", 1)
        assert (host, port.isdigit()) == ("127.0.0.1", True)
        assert line["protocol"] == "HTTP/1.1"
        assert (line["status"], line["reason"]) == ("200", "OK")
        assert int(line["bytes"]) == len(response.content) == 1000
        assert float(line["duration_ms"]) > 0
        not_found = wait_for_access(server, "GET", "/missing")
        assert (not_found["status"], not_found["reason"]) == ("404", "Not Found")
        assert int(not_found["bytes"]) == len(missing.content)


def test_an_http2_request_and_a_head_request() -> None:
    with running_server() as server, h2c_client(server) as client:
        response = client.get("/big?size=10")
        assert client.head("/").status_code == 200
        line = wait_for_access(server, "GET", "/big?size=10")
        assert (line["protocol"], line["status"], line["bytes"]) == ("HTTP/2", "200", "10")
        assert response.content == b"x" * 10
        assert float(line["duration_ms"]) > 0
        head = wait_for_access(server, "HEAD", "/")
        assert (head["status"], head["bytes"]) == ("200", "0")  # HEAD sends no body


def test_a_custom_template_gets_every_field() -> None:
    template = "|".join(f"{{{name}}}" for name in ACCESS_FIELDS if name != "client")
    template += "|{duration_ms:.3f}"
    with running_server("--access-log-format", template) as server, h2c_client(server) as client:
        assert client.get("/big?size=7").status_code == 200
        match = server.wait_for_line(r"osmium\.access: (GET\|.*)$")
    fields = match[1].split("|")
    expected = ["GET", "/big?size=7", "/big", "size=7", "HTTP/2", "200", "OK", "7"]
    assert fields[:8] == expected
    duration, stream, duration_3 = fields[8:]
    assert re.fullmatch(r"\d+\.\d\d", duration) and re.fullmatch(r"\d+\.\d{3}", duration_3)
    assert stream == "1"


def test_no_access_log_means_no_access_line() -> None:
    with running_server("--no-access-log") as server, h2c_client(server) as client:
        assert client.get("/").status_code == 200
        assert client.get("/missing").status_code == 404
        stop_and_drain(server)
    assert "stopped after 2 requests" in server.output
    assert "osmium.access" not in server.output, server.output


def test_an_app_exception_names_its_request_and_is_a_500_access_line() -> None:
    with running_server(app=ASGI_APPS) as server:
        with h2c_client(server) as client:
            assert client.get("/raise-before?marker=h2").status_code == 500
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/raise-before?marker=h1").status_code == 500
        server.wait_for_line(
            r'ERROR osmium\.error: "GET /raise-before HTTP/2" stream 1: exception in ASGI'
        )
        server.wait_for_line(
            r'ERROR osmium\.error: "GET /raise-before HTTP/1\.1": exception in ASGI'
        )
        line = wait_for_access(server, "GET", "/raise-before?marker=h2")
        assert (line["status"], line["reason"]) == ("500", "Internal Server Error")
        assert int(line["bytes"]) == len(INTERNAL_ERROR_BODY)


# -- WebSockets -----------------------------------------------------------------------------------


def test_a_websocket_has_one_access_line_when_it_ends() -> None:
    with running_server() as server:
        with connect(f"ws://{server.host}:{server.port}/ws/echo?room=1") as websocket:
            websocket.send("hello")
            assert websocket.recv(timeout=10) == "hello"
        line = wait_for_access(server, "GET", "/ws/echo?room=1")
        assert (line["protocol"], line["status"]) == ("HTTP/1.1", "101")
        assert (line["reason"], line["bytes"]) == ("Switching Protocols", "5")
        client = H2WebSocketClient(server.host, server.port)
        try:
            stream_id, status, _ = client.open("/ws/echo")
            assert status == 200
            websocket = client.websocket(stream_id)
            websocket.send(TextMessage("over h2"))
            assert websocket.next_event() == TextMessage("over h2")
            websocket.send(CloseConnection(1000))
            assert isinstance(websocket.next_event(), CloseConnection)
            line = wait_for_access(server, "CONNECT", "/ws/echo")
        finally:
            client.close()
        assert (line["protocol"], line["status"], line["bytes"]) == ("HTTP/2", "200", "7")


def test_a_denied_websocket_logs_the_denial() -> None:
    with running_server(app=WEBSOCKET_APPS) as server:
        with pytest.raises(InvalidStatus, match="401"):
            connect(f"ws://{server.host}:{server.port}/deny-http/1", open_timeout=10)
        line = wait_for_access(server, "GET", "/deny-http/1")
        assert (line["status"], line["reason"]) == ("401", "Unauthorized")
        assert int(line["bytes"]) == len(DENY_BODY)


# -- JSON lines -----------------------------------------------------------------------------------


def test_json_lines() -> None:
    with running_server("--log-format", "json", app=ASGI_APPS) as server:
        with h2c_client(server) as client:
            assert client.get("/scope?x=1").status_code == 200
            assert client.get("/raise-before").status_code == 500
        server.wait_for_line(r'"logger": "osmium\.access".*"/raise-before"')
        stop_and_drain(server)
    records = [json.loads(line) for line in server.lines]
    assert all(record.keys() >= JSON_KEYS for record in records), records
    assert all(ISO_TIME.fullmatch(record["time"]) for record in records), records
    listening = next(r for r in records if r["message"].startswith("listening on http://"))
    assert (listening["level"], listening["logger"]) == ("INFO", "osmium")
    assert listening["pid"] == server.process.pid
    access = next(r for r in records if r["logger"] == "osmium.access")
    assert access.keys() == JSON_KEYS | set(ACCESS_FIELDS)
    assert access["target"] == "/scope?x=1" and access["query"] == "x=1"
    assert (access["protocol"], access["status"], access["stream"]) == ("HTTP/2", 200, 1)
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] > 0
    assert access["message"].endswith(f"{access['bytes']} {access['duration_ms']:.2f}ms")
    error = next(r for r in records if r["level"] == "ERROR")
    assert error["message"].startswith('"GET /raise-before HTTP/2" stream 3: exception')
    assert "RuntimeError: boom before the response" in error["exception"]


# -- the app's own logging ------------------------------------------------------------------------

ROOT_LOGGING_APP = """\
import logging

logging.basicConfig(format="APP %(message)s", level=logging.INFO)
log = logging.getLogger("myapp")


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    log.info("hello from app")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def test_an_app_that_configures_the_root_logger_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "rootapp.py").write_text(ROOT_LOGGING_APP)
    env = {"PYTHONPATH": str(REPO_ROOT)}  # osmium itself, as if installed
    with running_server(app="rootapp:app", cwd=str(tmp_path), env=env) as server:
        with h2c_client(server) as client:
            assert client.get("/first").text == "ok"
            assert client.get("/second").text == "ok"
        stop_and_drain(server)
    lines = server.output.splitlines()
    app_lines = [line for line in lines if line.startswith("APP ")]
    assert app_lines == ["APP hello from app"] * 2, server.output
    osmium_lines = [line for line in lines if line not in app_lines]
    assert [fields["target"] for fields in access_lines(server)] == ["/first", "/second"]
    assert all(re.match(r"\d{4}-\d\d-\d\d .* \[\d+\] [A-Z]+ osmium", line) for line in osmium_lines)


# -- --log-config ---------------------------------------------------------------------------------

QUIET_ACCESS = {
    "json": json.dumps({"version": 1, "loggers": {"osmium.access": {"level": "WARNING"}}}),
    "toml": 'version = 1\n[loggers."osmium.access"]\nlevel = "WARNING"\n',
    "yaml": "version: 1\nloggers:\n  osmium.access:\n    level: WARNING\n",
}


@pytest.mark.parametrize("suffix", sorted(QUIET_ACCESS))
def test_a_log_config_can_quiet_the_access_log(tmp_path: Path, suffix: str) -> None:
    config = tmp_path / f"logging.{suffix}"
    config.write_text(QUIET_ACCESS[suffix])
    with running_server("--log-config", str(config), app=ASGI_APPS) as server:
        with h2c_client(server) as client:
            assert client.get("/scope").status_code == 200
            assert client.get("/raise-before").status_code == 500
        # The error line comes after the first request's access line would have.
        server.wait_for_line(r'ERROR osmium\.error: "GET /raise-before HTTP/2"')
    assert "osmium.access" not in server.output, server.output


TAGGED_ACCESS = """\
version = 1

[formatters.tagged]
format = "TAGGED %(name)s status=%(status)s stream=%(stream)s %(message)s"

[handlers.tagged]
class = "logging.StreamHandler"
formatter = "tagged"
stream = "ext://sys.stderr"

[loggers."osmium.access"]
handlers = ["tagged"]
propagate = false
"""


def test_a_log_config_formatter_gets_the_access_fields(tmp_path: Path) -> None:
    config = tmp_path / "logging.toml"
    config.write_text(TAGGED_ACCESS)
    with running_server("--log-config", str(config)) as server, h2c_client(server) as client:
        assert client.get("/missing").status_code == 404
        match = server.wait_for_line(r"^TAGGED osmium\.access status=404 stream=1 (.*)$")
    assert re.fullmatch(r'\S+ - "GET /missing HTTP/2" 404 Not Found 9 \d+\.\d\dms', match[1])
    assert re.search(r"\[\d+\] INFO osmium: listening on", server.output)  # osmium's own format


def test_a_log_config_formatter_can_be_osmiums_json(tmp_path: Path) -> None:
    config = tmp_path / "logging.yaml"
    config.write_text(
        "version: 1\n"
        "formatters:\n  json:\n    (): osmium.logs.JSONFormatter\n"
        "handlers:\n  out:\n    class: logging.StreamHandler\n    formatter: json\n"
        "loggers:\n  osmium:\n    handlers: [out]\n    propagate: false\n"
    )
    with running_server("--log-config", str(config)) as server, h2c_client(server) as client:
        assert client.get("/").status_code == 200
        match = server.wait_for_line(r'^(\{"time".*"logger": "osmium\.access".*)$')
    assert json.loads(match[1])["status"] == 200


# -- start-up errors: one line, exit 2 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{nope}", "access_log_format: unknown field {nope}; fields: client, method, target"),
        ("{method:d}", "access_log_format '{method:d}': Unknown format code 'd'"),
        ("{}", "access_log_format '{}':"),
        ("{client", "access_log_format '{client':"),
    ],
)
def test_a_bad_template_is_one_line(template: str, fragment: str) -> None:
    assert fragment in serve("--access-log-format", template)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("missing.json", None, "log_config file {path} not found"),
        ("bad.yaml", "version: 1\n  handlers: [\n", "log_config file {path} is not valid YAML: "),
        ("bad.json", "{", "log_config file {path} is not valid JSON: "),
        ("bad.toml", "version =", "log_config file {path} is not valid TOML: "),
        ("list.json", "[1]", "log_config file {path}: expected a table"),
        ("logging.ini", "[loggers]\n", "log_config {path}: expected a .json, .toml, .yaml"),
        ("noversion.json", "{}", "log_config {path}: dictionary doesn't specify a version"),
        (
            "badhandler.json",
            json.dumps({"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}),
            "log_config {path}: Unable to configure handler 'h': ",
        ),
    ],
)
def test_a_bad_log_config_is_one_line(
    tmp_path: Path, name: str, content: str | None, fragment: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert fragment.format(path=path) in serve("--log-config", str(path))


def test_a_yaml_log_config_without_pyyaml_says_what_to_install(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "yaml.py").write_text("raise ImportError('PyYAML is not installed here')\n")
    config = tmp_path / "logging.yml"
    config.write_text("version: 1\n")
    path = os.pathsep.join(filter(None, [str(shadow), os.environ.get("PYTHONPATH")]))
    line = serve("--log-config", str(config), env={"PYTHONPATH": path})
    assert f"log_config {config} is YAML, which needs PyYAML: pip install 'osmium[yaml]'" in line
