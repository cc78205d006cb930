"""Behind a reverse proxy: forwarded fields believed from trusted peers only, the hop rule, the
root path, over HTTP/1.1, h2c and WebSocket; bad settings are one-line errors.

The tests' own client is the "proxy": it connects from 127.0.0.1 and sends the fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.integration.support import h2c_client, run_osmium
from tests.integration.test_cli import assert_one_line_error
from tests.server_process import ServerProcess, running_server

APP = "tests.integration.apps.asgi_apps:app"
WEBSOCKET_APP = "tests.integration.apps.websocket_apps:app"
#: The test apps answer every path under /scope with the scope, so mounting them there keeps
#: them answering: a request for /x reaches the app as /scope/x.
ROOT_PATH = "/scope"
PROTOCOLS = ("http/1.1", "h2c")
CLIENT = "203.0.113.7"


def stopped_cleanly(server: ServerProcess) -> None:
    assert server.stop() == 0, server.output
    assert "Traceback" not in server.output, server.output


@pytest.fixture(scope="module")
def proxied() -> Iterator[ServerProcess]:
    """--proxy-headers with the default trust list: 127.0.0.1, the tests' own address."""
    with running_server("--proxy-headers", app=APP) as server:
        yield server
        stopped_cleanly(server)


@pytest.fixture(scope="module")
def distrusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Proxy headers on, but only 10.0.0.1 trusted (set in a config file, by the same names)."""
    config = tmp_path_factory.mktemp("proxy") / "osmium.toml"
    config.write_text('[server]\nproxy_headers = true\nforwarded_allow_ips = "10.0.0.1"\n')
    with running_server("--config", str(config), app=APP) as server:
        yield server
        stopped_cleanly(server)


@pytest.fixture(scope="module")
def mounted() -> Iterator[ServerProcess]:
    """--root-path alone: proxy headers stay off."""
    with running_server("--root-path", ROOT_PATH, app=APP) as server:
        yield server
        stopped_cleanly(server)


def scope_of(
    server: ServerProcess, protocol: str, path: str = "/scope", headers: Any = None
) -> dict[str, Any]:
    """The scope the app got for GET `path`, over HTTP/1.1 or h2c."""
    if protocol == "h2c":
        client = h2c_client(server)
    else:
        client = httpx.Client(base_url=server.url, timeout=30.0)
    with client:
        response = client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    scope = response.json()
    assert scope["http_version"] == ("2" if protocol == "h2c" else "1.1")
    return scope


def field(scope: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in scope["headers"] if key == name]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_x_forwarded_fields_from_a_trusted_peer(proxied: ServerProcess, protocol: str) -> None:
    headers = {
        # The client wrote 198.51.100.1 itself; 127.0.0.1 is a trusted proxy, skipped.
        "x-forwarded-for": f"198.51.100.1, {CLIENT}, 127.0.0.1",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "shop.example",
    }
    scope = scope_of(proxied, protocol, headers=headers)
    assert scope["client"] == [CLIENT, 0]
    assert scope["scheme"] == "https"
    assert scope["server"] == ["shop.example", 443]
    assert field(scope, "x-forwarded-for") == [headers["x-forwarded-for"]]  # read, not removed
    assert scope["has_state"] and scope["state"]["startups"] == 1  # lifespan went through


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_forwarded_from_a_trusted_peer(proxied: ServerProcess, protocol: str) -> None:
    headers = [
        ("forwarded", 'for="[2001:db8::7]:4711";proto=https;host="shop.example:8443"'),
        ("forwarded", "for=127.0.0.1;proto=http;host=backend"),
        ("x-forwarded-for", "198.51.100.1"),  # Forwarded wins
    ]
    scope = scope_of(proxied, protocol, headers=headers)
    assert scope["client"] == ["2001:db8::7", 4711]
    assert scope["scheme"] == "https"
    assert scope["server"] == ["shop.example", 8443]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_malformed_fields_are_ignored(proxied: ServerProcess, protocol: str) -> None:
    headers = [("forwarded", 'for="203.0.113.7;proto=https'), ("x-forwarded-for", CLIENT)]
    scope = scope_of(proxied, protocol, headers=headers)
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    assert scope["scheme"] == "http"
    scope = scope_of(proxied, protocol, headers={"x-forwarded-for": "not-an-address"})
    assert scope["client"][0] == "127.0.0.1"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_untrusted_peer_is_left_untouched(distrusting: ServerProcess, protocol: str) -> None:
    headers = {
        "forwarded": f"for={CLIENT};proto=https;host=shop.example",
        "x-forwarded-for": CLIENT,
        "x-forwarded-proto": "https",
    }
    scope = scope_of(distrusting, protocol, headers=headers)
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    assert scope["scheme"] == "http"
    assert scope["server"] == ["127.0.0.1", distrusting.port]
    assert field(scope, "forwarded") == [headers["forwarded"]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_root_path(mounted: ServerProcess, protocol: str) -> None:
    headers = {"x-forwarded-for": CLIENT, "x-forwarded-proto": "https"}
    scope = scope_of(mounted, protocol, path="/a%20b?q=1", headers=headers)
    assert scope["root_path"] == ROOT_PATH
    assert scope["path"] == "/scope/a b"
    assert scope["raw_path"] == "/scope/a%20b"
    assert scope["query_string"] == "q=1"
    # Without --proxy-headers, forwarded fields change nothing.
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"


def test_a_websocket_through_the_proxy() -> None:
    headers = {
        "x-forwarded-for": f"{CLIENT}, 127.0.0.1",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "chat.example:8443",
    }
    with running_server("--proxy-headers", "--root-path", ROOT_PATH, app=WEBSOCKET_APP) as server:
        url = f"ws://{server.host}:{server.port}/room%201?q=1"
        with connect(url, additional_headers=headers, open_timeout=10) as ws:
            scope = json.loads(ws.recv(timeout=5))
        stopped_cleanly(server)
    assert scope["type"] == "websocket"
    assert scope["client"] == [CLIENT, 0]
    assert scope["scheme"] == "wss"
    assert scope["server"] == ["chat.example", 8443]
    assert (scope["root_path"], scope["path"]) == (ROOT_PATH, "/scope/room 1")
    assert scope["raw_path"] == "/scope/room%201"


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (("--forwarded-allow-ips", "10.0.0.300"), ("forwarded_allow_ips", "'10.0.0.300'")),
        (("--forwarded-allow-ips", "10.0.0.1/8"), ("forwarded_allow_ips", "host bits")),
        (("--forwarded-allow-ips", "*, 10.0.0.1"), ("forwarded_allow_ips", "stand alone")),
        (("--forwarded-allow-ips", ""), ("forwarded_allow_ips", "empty entry")),
        (("--root-path", "api"), ("root_path 'api'", "must start with /")),
        (("--root-path", "/api/"), ("root_path '/api/'", "not end with /")),
    ],
    ids=["bad-ip", "host-bits", "star-mixed", "empty", "relative-root", "root-slash"],
)
def test_bad_flags(flags: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    result = run_osmium("serve", APP, "--bind", "127.0.0.1:0", "--proxy-headers", *flags)
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ('proxy_headers = "yes"\n', ("proxy_headers", "bool")),
        ('forwarded_allow_ips = "proxy.internal"\n', ("forwarded_allow_ips", "proxy.internal")),
        ('root_path = "/"\n', ("root_path '/'",)),
    ],
    ids=["not-a-bool", "a-name", "root-slash"],
)
def test_bad_config_file(tmp_path: Path, content: str, fragments: tuple[str, ...]) -> None:
    config = tmp_path / "osmium.toml"
    config.write_text(content)
    result = run_osmium("serve", APP, "--bind", "127.0.0.1:0", "--config", str(config))
    assert_one_line_error(result, *fragments)
