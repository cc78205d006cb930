"""Malformed WebSocket frames and handshakes, written byte by byte on a raw socket.

RFC 6455 §7.1.7: a server that fails the connection sends a Close frame with the reason's status
code first (§7.4.1: 1002 protocol error, 1007 invalid data), then closes TCP. A bad upgrade request
is answered with an HTTP error instead of 101 (§4.2.1, §4.4); odd but valid ones (frames behind the
request, an upgrade after a request) are served. The demo app's /ws/echo is the peer.
"""

from __future__ import annotations

import pytest

from tests.integration.apps.http1_raw import RawConnection, request_bytes
from tests.server_process import ServerProcess
from tests.support.websocket import (
    MAX_CONTROL_PAYLOAD,
    Opcode,
    WebSocketConnection,
    accept_token,
    build_frame,
    close_payload,
    handshake_headers,
    new_key,
    upgrade,
)

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
#: The server may wait this long for the peer before dropping TCP after its Close frame.
CLOSE_DEADLINE = 5.0

MALFORMED = {
    # §5.1: a client MUST mask every frame it sends.
    "unmasked client frame": (build_frame(Opcode.TEXT, b"hello", masked=False), PROTOCOL_ERROR),
    # §5.2: opcodes 0x3-0x7 are reserved for further non-control frames.
    "reserved opcode 0x3": (build_frame(0x3, b"hello"), PROTOCOL_ERROR),
    # §5.5: control frames MUST NOT be fragmented ...
    "fragmented control frame": (build_frame(Opcode.PING, b"x", fin=False), PROTOCOL_ERROR),
    # ... and carry at most 125 bytes.
    "control frame over 125 bytes": (
        build_frame(Opcode.PING, b"p" * (MAX_CONTROL_PAYLOAD + 1)),
        PROTOCOL_ERROR,
    ),
    # §5.2: RSV1 without an extension that defines it (the handshake offered none).
    "RSV1 without an extension": (build_frame(Opcode.TEXT, b"hello", rsv1=True), PROTOCOL_ERROR),
    # §5.4: a continuation frame continues something; a new message waits for the last to end.
    "continuation with nothing to continue": (
        build_frame(Opcode.CONTINUATION, b"orphan"),
        PROTOCOL_ERROR,
    ),
    "new message inside a fragmented one": (
        build_frame(Opcode.TEXT, b"first", fin=False) + build_frame(Opcode.TEXT, b"second"),
        PROTOCOL_ERROR,
    ),
    # §5.5.1: a Close body is empty or starts with a 2-byte code; §7.4.1: 1005 is never sent.
    "Close with a 1-byte body": (build_frame(Opcode.CLOSE, b"\x03"), PROTOCOL_ERROR),
    "Close with the reserved code 1005": (
        build_frame(Opcode.CLOSE, close_payload(1005)),
        PROTOCOL_ERROR,
    ),
    # §8.1: text frames carry UTF-8; 0xC3 0x28 is an invalid two-byte sequence ...
    "invalid UTF-8 in a text frame": (build_frame(Opcode.TEXT, b"ok \xc3\x28"), INVALID_DATA),
    # ... checked across fragments too ...
    "invalid UTF-8 across fragments": (
        build_frame(Opcode.TEXT, b"ok \xc3", fin=False) + build_frame(Opcode.CONTINUATION, b"\x28"),
        INVALID_DATA,
    ),
    # ... and in a Close frame's reason (§5.5.1).
    "invalid UTF-8 in a Close reason": (
        build_frame(Opcode.CLOSE, close_payload(1000) + b"\xff"),
        INVALID_DATA,
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_frame_gets_a_close_frame_then_tcp_close(
    server: ServerProcess, case: str
) -> None:
    frame, code = MALFORMED[case]
    with WebSocketConnection.open(server.host, server.port) as connection:
        connection.send(frame)
        before, close = connection.read_until_close(timeout=CLOSE_DEADLINE)
        connection.wait_for_eof(timeout=CLOSE_DEADLINE)
    assert before == []
    assert close.close_code == code, close


def test_well_formed_frames_get_the_right_answers(server: ServerProcess) -> None:
    # The control for the cases above: the same hand-built frames, done right, are served.
    with WebSocketConnection.open(server.host, server.port) as connection:
        connection.send_frame(Opcode.TEXT, "héllo".encode())
        text = connection.read_message()
        connection.send_frame(Opcode.BINARY, b"ab", fin=False)
        connection.send_frame(Opcode.PING, b"between fragments")
        connection.send_frame(Opcode.CONTINUATION, b"cd")
        pong = connection.expect_frame()
        data = connection.read_message()
        # A UTF-8 sequence split between two fragments is valid text.
        connection.send_frame(Opcode.TEXT, b"caf\xc3", fin=False)
        connection.send_frame(Opcode.CONTINUATION, b"\xa9")
        split = connection.read_message()
        connection.send_frame(Opcode.PING, b"p" * MAX_CONTROL_PAYLOAD)
        longest_pong = connection.expect_frame()
        connection.send_close(1000, "done")
        _, close = connection.read_until_close()
        connection.wait_for_eof(timeout=CLOSE_DEADLINE)
    assert text == (Opcode.TEXT, "héllo".encode())
    assert (pong.opcode, pong.payload) == (Opcode.PONG, b"between fragments")
    assert data == (Opcode.BINARY, b"abcd")
    assert split == (Opcode.TEXT, "café".encode())
    assert (longest_pong.opcode, longest_pong.payload) == (Opcode.PONG, b"p" * MAX_CONTROL_PAYLOAD)
    assert close.payload == close_payload(1000, "done")


def test_upgrade_without_a_key_is_a_400(server: ServerProcess) -> None:
    response, connection = upgrade(
        server.host, server.port, "/ws/echo", handshake_headers(key=None)
    )
    connection.close()
    assert response.status == 400


def test_unsupported_version_is_a_426_naming_version_13(server: ServerProcess) -> None:
    response, connection = upgrade(
        server.host, server.port, "/ws/echo", handshake_headers(new_key(), version="8")
    )
    connection.close()
    # §4.4: the server answers with the versions it speaks.
    assert response.status == 426
    assert response.header(b"sec-websocket-version") == b"13"


def test_the_101_proves_the_server_read_the_key(server: ServerProcess) -> None:
    key = new_key()
    response, connection = upgrade(server.host, server.port, "/ws/echo", handshake_headers(key))
    connection.close()
    assert response.status == 101
    assert response.tokens(b"upgrade") == {b"websocket"}
    assert b"upgrade" in response.tokens(b"connection")
    assert response.header(b"sec-websocket-accept") == accept_token(key).encode()


# -- handshakes ------------------------------------------------------------------------------------


def test_upgrade_after_a_request_on_the_same_connection(server: ServerProcess) -> None:
    with RawConnection.open(server.host, server.port) as raw:
        raw.send(request_bytes("GET", "/", f"{server.host}:{server.port}"))
        hello = raw.read_response()
        connection = WebSocketConnection.upgrade_on(raw)
        connection.send_frame(Opcode.TEXT, b"upgraded")
        echoed = connection.read_message()
    assert (hello.status, hello.body) == (200, b"hello world")
    assert echoed == (Opcode.TEXT, b"upgraded")


def test_frames_sent_with_the_upgrade_request_are_not_lost(server: ServerProcess) -> None:
    # A client may write its first frames right behind the request, before the 101 comes back:
    # they arrive in the same read as the request head and belong to the WebSocket.
    early = build_frame(Opcode.TEXT, b"early") + build_frame(Opcode.BINARY, b"bird")
    with RawConnection.open(server.host, server.port) as raw:
        connection = WebSocketConnection.upgrade_on(raw, early=early)
        first, second = connection.read_message(), connection.read_message()
    assert first == (Opcode.TEXT, b"early")
    assert second == (Opcode.BINARY, b"bird")


def test_connection_field_with_several_tokens(server: ServerProcess) -> None:
    # Firefox sends `Connection: keep-alive, Upgrade`; the token is what counts (RFC 6455 §4.1).
    with RawConnection.open(server.host, server.port) as raw:
        connection = WebSocketConnection.upgrade_on(raw, connection_field="keep-alive, Upgrade")
        connection.send_frame(Opcode.TEXT, b"firefox")
        assert connection.read_message() == (Opcode.TEXT, b"firefox")
