"""Request smuggling guards: ambiguous or malformed HTTP/1.1 framing is refused, never split in two.

Each case writes one bad request followed by a well-formed `GET /smuggled` in a single write.
The server must answer the first with 400 (501 where RFC 9112 §6.1 allows it for a transfer
coding it does not implement), close the connection, and never answer the smuggled request;
a fresh connection then still gets 200. Over HTTP/2 the same fields are a stream error.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from h2.errors import ErrorCodes

from tests.integration.apps.http1_raw import RawConnection, assert_serving
from tests.integration.h2client import H2Client
from tests.server_process import ServerProcess, running_server

HOST = b"Host: localhost\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
BAD_REQUEST = {400}
BAD_CODING = {400, 501}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """The demo app, with every request in the access log (to show what was served)."""
    with running_server("--access-log") as process:
        yield process


def post(fields: bytes, body: bytes) -> bytes:
    return b"POST /echo HTTP/1.1\r\n" + HOST + fields + b"\r\n" + body


def get(fields: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\n" + HOST + fields + b"\r\n"


CHUNKED_EMPTY = b"0\r\n\r\n"

CASES: dict[str, tuple[bytes, set[int]]] = {
    # RFC 9112 §6.3: both framings present -> an error, and the connection MUST close.
    "content-length-and-chunked": (
        post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", CHUNKED_EMPTY),
        BAD_REQUEST,
    ),
    "chunked-and-content-length": (
        post(b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", CHUNKED_EMPTY),
        BAD_REQUEST,
    ),
    # §6.3: differing Content-Length values (two fields or a list) -> 400 and close.
    "two-content-lengths": (
        post(b"Content-Length: 4\r\nContent-Length: 40\r\n", b"abcd"),
        BAD_REQUEST,
    ),
    "content-length-list": (post(b"Content-Length: 4, 40\r\n", b"abcd"), BAD_REQUEST),
    "content-length-negative": (post(b"Content-Length: -4\r\n", b"abcd"), BAD_REQUEST),
    "content-length-plus-sign": (post(b"Content-Length: +4\r\n", b"abcd"), BAD_REQUEST),
    "content-length-hex": (post(b"Content-Length: 0x4\r\n", b"abcd"), BAD_REQUEST),
    # §6.1: a coding the server does not understand -> 501 (or 400), then close.
    "te-gzip-chunked": (post(b"Transfer-Encoding: gzip, chunked\r\n", CHUNKED_EMPTY), BAD_CODING),
    "te-unknown": (post(b"Transfer-Encoding: xchunked\r\n", CHUNKED_EMPTY), BAD_CODING),
    "te-chunked-twice": (
        post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", CHUNKED_EMPTY),
        BAD_CODING,
    ),
    # §6.3: chunked present but not the final coding -> the server MUST answer 400 and close.
    "te-chunked-not-final": (
        post(b"Transfer-Encoding: chunked, gzip\r\n", CHUNKED_EMPTY),
        BAD_REQUEST,
    ),
    # §5.1: whitespace between field name and colon MUST be rejected with 400.
    "te-space-before-colon": (post(b"Transfer-Encoding : chunked\r\n", CHUNKED_EMPTY), BAD_REQUEST),
    "content-length-space-before-colon": (post(b"Content-Length : 4\r\n", b"abcd"), BAD_REQUEST),
    # CR/LF/NUL inside a field value (obs-fold: see its own test below).
    "cr-in-value": (get(b"X-Injected: a\rTransfer-Encoding: chunked\r\n"), BAD_REQUEST),
    "lf-in-value": (
        post(b"Content-Length: 4\r\nX-Injected: a\nContent-Length: 40\r\n", b"abcd"),
        BAD_REQUEST,
    ),
    "nul-in-value": (get(b"X-Injected: a\x00b\r\n"), BAD_REQUEST),
    # Field names are tokens: no space, control characters, separators, nor empty.
    "space-in-name": (get(b"X Injected: a\r\n"), BAD_REQUEST),
    "control-in-name": (get(b"X\x01Injected: a\r\n"), BAD_REQUEST),
    "separator-in-name": (get(b"X(Injected): a\r\n"), BAD_REQUEST),
    "empty-name": (get(b": a\r\n"), BAD_REQUEST),
    # Request line: the target cannot contain spaces.
    "space-in-target": (b"GET /a b HTTP/1.1\r\n" + HOST + b"\r\n", BAD_REQUEST),
    "two-spaces-in-request-line": (b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", BAD_REQUEST),
    # Chunked body framing: a bad size, chunk data not followed by CRLF.
    "chunk-size-not-hex": (
        post(b"Transfer-Encoding: chunked\r\n", b"zz\r\nabcd\r\n" + CHUNKED_EMPTY),
        BAD_REQUEST,
    ),
    "chunk-data-without-crlf": (
        post(b"Transfer-Encoding: chunked\r\n", b"4\r\nabcdXX" + CHUNKED_EMPTY),
        BAD_REQUEST,
    ),
}


@pytest.mark.parametrize(("request_bytes", "statuses"), CASES.values(), ids=CASES.keys())
def test_smuggling_attempt_is_refused_and_closed(
    server: ServerProcess, request_bytes: bytes, statuses: set[int]
) -> None:
    with RawConnection.open(server.host, server.port) as connection:
        connection.send(request_bytes + SMUGGLED)
        response = connection.read_response()
        log = server.output[-3000:]
        assert response.status in statuses, (response, log)
        # Nothing else: no second response (the smuggled GET), and the server hung up.
        rest = connection.read_to_eof()
        assert rest == b"", f"after the {response.status}: {rest[:500]!r}\n{log}"
    assert_serving(server.host, server.port, server.output)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: elsewhere\r\n\r\n",
    ],
    ids=["missing-host", "two-hosts"],
)
def test_host_field_errors_are_400(server: ServerProcess, request_bytes: bytes) -> None:
    """RFC 9112 §3.2: no Host, or more than one, in an HTTP/1.1 request MUST get 400."""
    with RawConnection.open(server.host, server.port) as connection:
        connection.send(request_bytes)
        response = connection.read_response()
    assert response.status == 400, (response, server.output[-3000:])
    assert_serving(server.host, server.port, server.output)


def test_pipelined_well_framed_requests_are_both_served(server: ServerProcess) -> None:
    """The control: the same two-requests-in-one-write shape, well framed, gets two answers."""
    with RawConnection.open(server.host, server.port) as connection:
        connection.send(
            post(b"Content-Length: 4\r\n", b"abcd") + SMUGGLED.replace(b"smuggled", b"second")
        )
        first = connection.read_response()
        second = connection.read_response()
    assert (first.status, first.body) == (200, b"abcd")
    assert second.status == 404


# -- HTTP/2: connection-specific fields are a stream error -----------------------------------------


@pytest.mark.parametrize(
    "field",
    [(b"transfer-encoding", b"chunked"), (b"connection", b"keep-alive")],
    ids=["transfer-encoding", "connection"],
)
def test_h2_connection_specific_field_is_stream_error(
    server: ServerProcess, field: tuple[bytes, bytes]
) -> None:
    with H2Client(server.host, server.port) as client:
        client.conn.config.validate_outbound_headers = False
        client.conn.config.normalize_outbound_headers = False
        bad = client.response(client.request("POST", "/echo", [field], end_stream=False))
        assert bad.reset_code == ErrorCodes.PROTOCOL_ERROR, bad
        assert bad.headers is None
        # A stream error, not a connection error: the connection carries the next request.
        good = client.get("/")
        assert (good.status, bytes(good.data)) == (200, b"hello world")
        assert not client.goaways
    assert_serving(server.host, server.port, server.output)


@pytest.mark.parametrize(
    "fold",
    [b"X-Folded: a\r\n Transfer-Encoding: chunked\r\n", b"X-Folded: a\r\n\tContent-Length: 41\r\n"],
    ids=["obs-fold-space", "obs-fold-tab"],
)
def test_obs_fold_is_unfolded_never_read_as_framing(server: ServerProcess, fold: bytes) -> None:
    """RFC 9112 §5.2 lets a server replace obs-fold with spaces (h11 does) instead of a 400.
    Either way the folded text must not become a field: the first request has no body, so the
    pipelined request after it is answered as the second, separate response."""
    after = b"GET /after-fold HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n"
    with RawConnection.open(server.host, server.port) as connection:
        connection.send(get(fold) + after)
        first = connection.read_response()
        if first.status == 400:
            assert connection.read_to_eof() == b""
        else:
            assert first.status == 200
            assert connection.read_response().status == 404  # /after-fold, on its own
    assert_serving(server.host, server.port, server.output)


def test_smuggled_path_was_never_served(server: ServerProcess) -> None:
    """Runs after the cases above: the access log never shows /smuggled answered."""
    with RawConnection.open(server.host, server.port) as connection:
        connection.send(b"GET /log-marker HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
        assert connection.read_response().status == 404
    server.wait_for_line("/log-marker")
    assert "/smuggled" not in server.output, server.output[-5000:]
    assert "Traceback" not in server.output, server.output[-5000:]
