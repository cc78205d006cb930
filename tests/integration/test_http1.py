"""HTTP/1.1 on the cleartext port (anything but the HTTP/2 preface) and over TLS (ALPN http/1.1).

The same ASGI app answers: keep-alive, pipelining, chunked bodies both ways, HEAD, 100-continue,
Connection: close, and the refusals of malformed requests (400/431 and a close).
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TLSFiles
from tests.integration.apps.http1_raw import (
    RawConnection,
    RawResponse,
    assert_serving,
    request_bytes,
)
from tests.integration.support import (
    assert_all_succeeded,
    h2c_client,
    h2load,
    payload_chunks,
    payload_digest,
    run_tool,
)
from tests.server_process import ServerProcess, running_server

APPS = "tests.integration.apps.asgi_apps"
CURL = ("curl", "--silent", "--show-error", "--max-time", "30")
FIVE_MIB = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def scope_server() -> Iterator[ServerProcess]:
    """The introspection app (/scope, /sha256) on cleartext."""
    with running_server(app=f"{APPS}:app") as process:
        yield process


@pytest.fixture(scope="module")
def tls_scope_server(tls_files: TLSFiles) -> Iterator[ServerProcess]:
    with running_server(
        "--certfile",
        str(tls_files.certfile),
        "--keyfile",
        str(tls_files.keyfile),
        app=f"{APPS}:app",
    ) as process:
        assert process.scheme == "https"
        yield process


def http1_client(server: ServerProcess, **kwargs: object) -> httpx.Client:
    return httpx.Client(http1=True, http2=False, base_url=server.url, timeout=30.0, **kwargs)


def authority(server: ServerProcess) -> str:
    return f"{server.host}:{server.port}"


def raw(server: ServerProcess) -> RawConnection:
    return RawConnection.open(server.host, server.port)


def get(server: ServerProcess, target: str, headers: list[tuple[str, str]] | None = None) -> bytes:
    return request_bytes("GET", target, authority(server), headers)


def scope_of(response: RawResponse | httpx.Response) -> dict:
    body = response.body if isinstance(response, RawResponse) else response.content
    return json.loads(body)


# -- httpx -----------------------------------------------------------------------------------------


def test_httpx_get_head_and_404(server: ServerProcess) -> None:
    with http1_client(server) as client:
        hello = client.get("/")
        head = client.head("/")
        missing = client.get("/missing")
    assert hello.http_version == "HTTP/1.1"
    assert (hello.status_code, hello.text) == (200, "hello world")
    assert hello.headers["content-length"] == "11"
    assert head.http_version == "HTTP/1.1"
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == "11"
    assert missing.status_code == 404


def test_httpx_post_with_content_length_is_echoed_chunked(server: ServerProcess) -> None:
    body = b"0123456789" * 10_000
    with http1_client(server) as client:
        response = client.post("/echo", content=body)
    assert response.http_version == "HTTP/1.1"
    assert response.status_code == 200
    assert response.content == body
    # /echo streams without a content-length: HTTP/1.1 frames it with chunked encoding.
    assert response.headers.get("transfer-encoding") == "chunked", response.headers
    assert "content-length" not in response.headers


def test_httpx_post_with_chunked_body_is_echoed(server: ServerProcess) -> None:
    parts = [b"first-", b"second-", b"x" * 100_000, b"-last"]
    with http1_client(server) as client:
        request = client.build_request("POST", "/echo", content=iter(parts))
        assert request.headers["transfer-encoding"] == "chunked"
        response = client.send(request)
    assert response.status_code == 200
    assert response.content == b"".join(parts)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_five_mib_upload_echoed_intact(server: ServerProcess, framing: str) -> None:
    seed = 1101
    content: bytes | Iterator[bytes] = (
        b"".join(payload_chunks(FIVE_MIB, seed))
        if framing == "content-length"
        else payload_chunks(FIVE_MIB, seed)
    )
    digest = hashlib.sha256()
    received = 0
    with (
        http1_client(server) as client,
        client.stream("POST", "/echo", content=content) as response,
    ):
        assert response.http_version == "HTTP/1.1"
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            digest.update(chunk)
            received += len(chunk)
    assert received == FIVE_MIB
    assert digest.hexdigest() == payload_digest(FIVE_MIB, seed)


def test_httpx_keep_alive_uses_one_connection(scope_server: ServerProcess) -> None:
    with http1_client(scope_server) as client:
        ports = {scope_of(client.get("/scope"))["client"][1] for _ in range(10)}
    assert len(ports) == 1, ports


# -- raw sockets: keep-alive, pipelining, close, HEAD ----------------------------------------------


def test_keep_alive_ten_requests_on_one_socket(scope_server: ServerProcess) -> None:
    with raw(scope_server) as connection:
        for index in range(10):
            connection.send(get(scope_server, f"/scope?n={index}"))
            response = connection.read_response()
            assert response.status == 200
            assert b"close" not in response.tokens(b"connection")
            scope = scope_of(response)
            assert scope["query_string"] == f"n={index}"
            assert scope["client"] == ["127.0.0.1", connection.local_port]
        assert not connection.eof


def test_pipelined_requests_answered_in_order(server: ServerProcess) -> None:
    # The first request is the slow one: responses must still come back in request order.
    with raw(server) as connection:
        connection.send(
            get(server, "/slow?ms=200")
            + get(server, "/")
            + request_bytes("POST", "/echo", authority(server), body=b"pipelined body")
            + get(server, "/missing")
        )
        responses = [connection.read_response() for _ in range(4)]
    assert [response.status for response in responses] == [200, 200, 200, 404]
    assert responses[0].body == b"slow response"
    assert responses[1].body == b"hello world"
    assert responses[2].body == b"pipelined body"


def test_connection_close_is_honoured(server: ServerProcess) -> None:
    with raw(server) as connection:
        connection.send(get(server, "/", [("Connection", "close")]))
        response = connection.read_response()
        assert (response.status, response.body) == (200, b"hello world")
        assert b"close" in response.tokens(b"connection"), response.headers
        assert connection.read_to_eof() == b""


def test_http10_request_is_answered_then_closed(server: ServerProcess) -> None:
    with raw(server) as connection:
        connection.send(b"GET / HTTP/1.0\r\nHost: " + authority(server).encode() + b"\r\n\r\n")
        response = connection.read_response()
        assert (response.status, response.body) == (200, b"hello world")
        assert not response.chunked
        assert connection.read_to_eof() == b""


def test_http10_scope_says_1_0(scope_server: ServerProcess) -> None:
    with raw(scope_server) as connection:
        host = authority(scope_server).encode()
        connection.send(b"GET /scope HTTP/1.0\r\nHost: " + host + b"\r\n\r\n")
        response = connection.read_response()
    assert json.loads(response.body)["http_version"] == "1.0"


def test_head_has_no_body_and_keeps_the_connection_in_step(server: ServerProcess) -> None:
    # A body after a HEAD response would be read as the start of the next response.
    with raw(server) as connection:
        for target in ("/", "/stream?chunks=3&size=100", "/big?size=5000"):
            connection.send(request_bytes("HEAD", target, authority(server)))
            head = connection.read_response(method=b"HEAD")
            assert head.status == 200, target
            connection.send(get(server, "/"))
            follow = connection.read_response()
            assert (follow.status, follow.body) == (200, b"hello world"), target
    with raw(server) as connection:
        connection.send(request_bytes("HEAD", "/big?size=5000", authority(server)))
        head = connection.read_response(method=b"HEAD")
        assert head.header(b"content-length") == b"5000"
        assert head.body == b""


def test_streamed_response_is_chunked(server: ServerProcess) -> None:
    with raw(server) as connection:
        connection.send(get(server, "/stream?chunks=5&size=1000"))
        response = connection.read_response()
    assert response.status == 200
    assert response.chunked
    assert response.header(b"content-length") is None
    assert response.body == b"s" * 5000


def test_trailers_route_over_http1(server: ServerProcess) -> None:
    with raw(server) as connection:
        connection.send(get(server, "/trailers", [("TE", "trailers")]))
        response = connection.read_response()
        assert response.status == 200
        assert response.body == b"body with trailers"
        if response.trailers:  # only a chunked body can carry them
            assert response.chunked
            assert response.trailers == [(b"x-checksum", b"demo-123")]
        # The framing ended where it should: the connection carries the next request.
        connection.send(get(server, "/"))
        assert connection.read_response().body == b"hello world"


# -- request bodies: chunked, 100-continue ---------------------------------------------------------


def test_raw_chunked_request_body(scope_server: ServerProcess) -> None:
    chunked = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"
    with raw(scope_server) as connection:
        connection.send(
            b"POST /sha256 HTTP/1.1\r\nHost: "
            + authority(scope_server).encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked
        )
        response = connection.read_response()
        assert response.status == 200
        assert json.loads(response.body) == {
            "length": 11,
            "sha256": hashlib.sha256(b"hello world").hexdigest(),
        }
        connection.send(get(scope_server, "/scope"))
        assert connection.read_response().status == 200


def test_expect_100_continue(scope_server: ServerProcess) -> None:
    body = b"c" * 300_000
    with raw(scope_server) as connection:
        connection.send(
            request_bytes(
                "POST", "/sha256", authority(scope_server), [("Expect", "100-continue")]
            ).removesuffix(b"\r\n\r\n")
            + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        # The client sends nothing more until the server says go on.
        interim = connection.read_head()
        assert interim.status == 100, interim
        connection.send(body)
        response = connection.read_response()
    assert response.status == 200
    assert json.loads(response.body) == {
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def test_curl_big_post_uses_100_continue(scope_server: ServerProcess, tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"".join(payload_chunks(2 * 1024 * 1024, 7)))
    result = run_tool(
        *CURL,
        "--http1.1",
        "-v",
        "--expect100-timeout",
        "20",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        f"@{payload}",
        f"{scope_server.url}/sha256",
    )
    assert result.returncode == 0, result.stderr
    assert "> Expect: 100-continue" in result.stderr, result.stderr
    # The reason phrase is optional (RFC 9112 §4): "HTTP/1.1 100" with or without "Continue".
    assert re.search(r"^< HTTP/1\.1 100\b", result.stderr, re.MULTILINE), result.stderr
    assert "< HTTP/1.1 200" in result.stderr, result.stderr
    assert json.loads(result.stdout) == {
        "length": 2 * 1024 * 1024,
        "sha256": payload_digest(2 * 1024 * 1024, 7),
    }


# -- ASGI scope ------------------------------------------------------------------------------------


def test_scope_over_http1(scope_server: ServerProcess) -> None:
    with raw(scope_server) as connection:
        connection.send(
            request_bytes(
                "POST",
                "/scope/sub%20dir?a=1&b=two",
                authority(scope_server),
                [("X-Mixed-Case", "Some Value"), ("Accept", "*/*")],
                body=b"request body",
            )
        )
        response = connection.read_response()
        local_port = connection.local_port
    assert response.status == 200
    scope = scope_of(response)
    assert scope["type"] == "http"
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "http"
    assert scope["method"] == "POST"
    assert scope["path"] == "/scope/sub dir"
    assert scope["raw_path"] == "/scope/sub%20dir"
    assert scope["query_string"] == "a=1&b=two"
    assert scope["header_types"] == ["bytes"]
    assert scope["headers"] == [
        ["host", authority(scope_server)],
        ["x-mixed-case", "Some Value"],
        ["accept", "*/*"],
        ["content-length", "12"],
    ]
    assert scope["client"] == ["127.0.0.1", local_port]
    assert scope["server"] == ["127.0.0.1", scope_server.port]
    assert scope["body"] == "request body"


def test_httpx_http1_and_h2c_share_the_port(scope_server: ServerProcess) -> None:
    with http1_client(scope_server) as one, h2c_client(scope_server) as two:
        over_1 = one.get("/scope")
        over_2 = two.get("/scope")
    assert (over_1.http_version, scope_of(over_1)["http_version"]) == ("HTTP/1.1", "1.1")
    assert (over_2.http_version, scope_of(over_2)["http_version"]) == ("HTTP/2", "2")


# -- curl, h2load ----------------------------------------------------------------------------------


def test_curl_http1(server: ServerProcess) -> None:
    result = run_tool(*CURL, "--http1.1", "-w", "\n%{http_version} %{http_code}", f"{server.url}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world\n1.1 200"


def test_curl_http1_post_echo(server: ServerProcess) -> None:
    result = run_tool(
        *CURL,
        "--http1.1",
        "--data-binary",
        "curl body",
        "-w",
        "\n%{http_version}",
        f"{server.url}/echo",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "curl body\n1.1"


def test_h2load_h1(server: ServerProcess) -> None:
    result = h2load("--h1", "-n", "2000", "-c", "4", f"{server.url}/", timeout=60)
    assert "Application protocol: http/1.1" in result.output, result.output
    assert_all_succeeded(result, 2000)


# -- TLS: ALPN http/1.1 ----------------------------------------------------------------------------


def test_curl_http1_over_tls(tls_scope_server: ServerProcess, tls_files: TLSFiles) -> None:
    result = run_tool(
        *CURL,
        "--http1.1",
        "--cacert",
        str(tls_files.ca),
        "-w",
        "\n%{http_version} %{http_code}",
        f"{tls_scope_server.url}/scope",
    )
    assert result.returncode == 0, result.stderr
    body, _, summary = result.stdout.rpartition("\n")
    assert summary == "1.1 200"
    scope = json.loads(body)
    assert (scope["http_version"], scope["scheme"]) == ("1.1", "https")


def test_curl_http2_over_tls_still_h2(tls_scope_server: ServerProcess, tls_files: TLSFiles) -> None:
    result = run_tool(
        *CURL,
        "--http2",
        "--cacert",
        str(tls_files.ca),
        "-w",
        "\n%{http_version}",
        f"{tls_scope_server.url}/scope",
    )
    assert result.returncode == 0, result.stderr
    body, _, version = result.stdout.rpartition("\n")
    assert version == "2"
    assert json.loads(body)["http_version"] == "2"


@pytest.mark.parametrize(
    ("offered", "selected"),
    [(["http/1.1"], "http/1.1"), (["h2", "http/1.1"], "h2"), (["http/1.1", "h2"], "h2")],
)
def test_alpn_selection(
    tls_scope_server: ServerProcess, tls_files: TLSFiles, offered: list[str], selected: str
) -> None:
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    context.set_alpn_protocols(offered)
    with RawConnection.open_tls(tls_scope_server.host, tls_scope_server.port, context) as tls:
        assert tls.sock.selected_alpn_protocol() == selected  # type: ignore[attr-defined]


def test_tls_client_without_alpn_gets_http1(
    tls_scope_server: ServerProcess, tls_files: TLSFiles
) -> None:
    context = ssl.create_default_context(cafile=str(tls_files.ca))  # no ALPN offered at all
    with RawConnection.open_tls(tls_scope_server.host, tls_scope_server.port, context) as tls:
        tls.send(get(tls_scope_server, "/scope"))
        response = tls.read_response()
    assert (response.version, response.status) == (b"HTTP/1.1", 200)
    assert scope_of(response)["http_version"] == "1.1"


def test_raw_http1_over_tls_keep_alive(
    tls_scope_server: ServerProcess, tls_files: TLSFiles
) -> None:
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    context.set_alpn_protocols(["http/1.1"])
    with RawConnection.open_tls(tls_scope_server.host, tls_scope_server.port, context) as tls:
        for _ in range(3):
            tls.send(get(tls_scope_server, "/scope"))
            response = tls.read_response()
            assert response.version == b"HTTP/1.1"
            assert response.status == 200
            scope = scope_of(response)
            assert (scope["http_version"], scope["scheme"]) == ("1.1", "https")
            assert scope["client"][1] == tls.local_port


def test_httpx_http1_over_tls(tls_scope_server: ServerProcess, tls_files: TLSFiles) -> None:
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    with httpx.Client(http1=True, http2=False, verify=context, timeout=30) as client:
        response = client.post(f"{tls_scope_server.url}/scope", content=b"tls body")
    assert response.http_version == "HTTP/1.1"
    scope = scope_of(response)
    assert (scope["http_version"], scope["scheme"], scope["body"]) == ("1.1", "https", "tls body")


# -- refusals --------------------------------------------------------------------------------------


def test_malformed_request_line_is_400_and_close(server: ServerProcess) -> None:
    with raw(server) as connection:
        connection.send(b"THIS IS NOT HTTP\r\n\r\n")
        response = connection.read_response()
        assert response.status == 400, response
        assert connection.read_to_eof() == b""
    assert_serving(server.host, server.port, server.output)


def test_oversized_header_block_is_431_and_close(server: ServerProcess) -> None:
    filler = "f" * 8000
    headers = [(f"X-Filler-{index}", filler) for index in range(32)]  # ~256 KiB of fields
    with raw(server) as connection:
        connection.send_tolerant(get(server, "/", headers))
        response = connection.read_response()
        assert response.status in (431, 400), response
        assert connection.read_to_eof() == b""
    assert_serving(server.host, server.port, server.output)


def test_one_oversized_header_line_is_431_and_close(server: ServerProcess) -> None:
    with raw(server) as connection:
        connection.send_tolerant(get(server, "/", [("X-Huge", "h" * 200_000)]))
        response = connection.read_response()
        assert response.status in (431, 400), response
        assert connection.read_to_eof() == b""
    assert_serving(server.host, server.port, server.output)


def test_server_log_has_no_traceback(server: ServerProcess) -> None:
    # Runs last in this module: nothing above made the server crash a connection handler.
    assert "Traceback" not in server.output, server.output[-5000:]
