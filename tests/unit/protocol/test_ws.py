"""The sans-IO WebSocket: handshake checks and answer, message assembly under the size limit,
control frames and closes; frames come from a wsproto client (another implementation than the
one under test), as a real peer's would."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import Opcode
from wsproto.handshake import client_extensions_handshake
from wsproto.utilities import LocalProtocolError

from osmium.protocol.ws import (
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    Closed,
    Message,
    PongReceived,
    WebSocket,
    WebSocketSettings,
    accept,
    handshake_problem,
    is_websocket_request,
)

#: RFC 6455 §1.3's example key and its accept token.
KEY, ACCEPT = b"dGhlIHNhbXBsZSBub25jZQ==", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
REQUEST = [
    (b":method", b"GET"),
    (b"upgrade", b"websocket"),
    (b"connection", b"keep-alive, Upgrade"),
    (b"sec-websocket-key", KEY),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-protocol", b"chat, superchat"),
]


def client() -> Connection:
    return Connection(ConnectionType.CLIENT)


def test_an_upgrade_request_is_recognised_by_its_tokens() -> None:
    assert is_websocket_request(REQUEST)
    assert not is_websocket_request([(b"upgrade", b"h2c"), (b"connection", b"upgrade")])
    assert not is_websocket_request([(b"upgrade", b"websocket")])


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ((b":method", b"POST"), 400),
        ((b"sec-websocket-version", b"8"), 426),
        ((b"sec-websocket-key", b"short"), 400),
        ((b"sec-websocket-key", b"not base64!!"), 400),
    ],
)
def test_a_handshake_that_cannot_be_accepted_says_why(change: tuple, status: int) -> None:
    headers = [change if name == change[0] else (name, value) for name, value in REQUEST]
    problem = handshake_problem(headers)
    assert problem is not None and problem[0] == status
    if status == 426:
        assert problem[2] == [(b"sec-websocket-version", b"13")]
    assert handshake_problem(REQUEST) is None


def test_accept_answers_the_key_and_the_chosen_subprotocol() -> None:
    acceptance = accept(REQUEST, "superchat", [(b"X-Extra", b"1")], WebSocketSettings())
    assert (b"sec-websocket-accept", ACCEPT) in acceptance.headers
    assert (b"sec-websocket-protocol", b"superchat") in acceptance.headers
    assert (b"x-extra", b"1") in acceptance.headers
    assert acceptance.extensions == []  # the client offered no extension
    with pytest.raises(ValueError, match="not offered"):
        accept(REQUEST, "other", [], WebSocketSettings())


def test_permessage_deflate_is_negotiated_only_when_offered_and_on() -> None:
    offer = [*REQUEST, (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")]
    accepted = accept(offer, None, [], WebSocketSettings())
    assert accepted.extensions and any(
        name == b"sec-websocket-extensions" and value.startswith(b"permessage-deflate")
        for name, value in accepted.headers
    )
    off = WebSocketSettings(per_message_deflate=False)
    assert accept(offer, None, [], off).extensions == []


def test_a_fragmented_message_arrives_whole() -> None:
    peer, server = client(), WebSocket(1024)
    data = peer.send(TextMessage("hel", message_finished=False))
    data += peer.send(TextMessage("lo\u00e9", message_finished=True))
    data += peer.send(BytesMessage(b"\x00\x01", message_finished=False))
    data += peer.send(BytesMessage(b"\x02", message_finished=True))
    assert server.receive(data) == [Message("hello\u00e9"), Message(b"\x00\x01\x02")]


def test_a_character_split_across_fragments_is_decoded_whole() -> None:
    peer, server = client(), WebSocket(1024)
    encoded = "\u00e9t\u00e9".encode()
    data = peer.send(BytesMessage(b"", message_finished=False))  # a binary message first
    data += peer.send(BytesMessage(b"x", message_finished=True))
    assert server.receive(data) == [Message(b"x")]
    first = raw_frame(Opcode.TEXT, encoded[:1], fin=False)
    assert server.receive(first) == []
    assert server.receive(raw_frame(Opcode.CONTINUATION, encoded[1:])) == [Message("\u00e9t\u00e9")]


def test_a_message_over_the_limit_closes_1009_and_is_dropped_as_it_arrives() -> None:
    peer, server = client(), WebSocket(1000)
    events = server.receive(peer.send(BytesMessage(b"x" * 600, message_finished=False)))
    assert events == []
    (event,) = server.receive(peer.send(BytesMessage(b"x" * 600, message_finished=False)))
    assert isinstance(event, Closed) and event.code == MESSAGE_TOO_BIG
    assert server.ended and server.failed
    peer.receive_data(server.data_to_send())
    (close,) = list(peer.events())
    assert isinstance(close, CloseConnection) and close.code == MESSAGE_TOO_BIG
    # The rest of the message, and more messages, are read and dropped: nothing is kept.
    for _ in range(100):
        assert server.receive(raw_frame(Opcode.CONTINUATION, b"y" * 125, fin=False)) == []
    assert server.receive(raw_frame(Opcode.BINARY, b"z" * 100)) == []
    assert server.data_to_send() == b""


def test_a_frame_over_the_limit_is_refused_at_its_header() -> None:
    """The 1009 comes from the frame's length field: none of its payload is waited for."""
    server = WebSocket(1000)
    header = bytes([0x82, 0x80 | 127]) + (64 << 20).to_bytes(8, "big") + b"\x01\x02\x03\x04"
    (event,) = server.receive(header)
    assert isinstance(event, Closed) and event.code == MESSAGE_TOO_BIG


def test_a_ping_is_answered_and_a_pong_reported() -> None:
    peer, server = client(), WebSocket(1024)
    assert server.receive(peer.send(Ping(b"abc"))) == []
    peer.receive_data(server.data_to_send())
    assert list(peer.events()) == [Pong(b"abc")]
    assert server.receive(peer.send(Pong(b"xyz"))) == [PongReceived(b"xyz")]


def test_the_peers_close_is_answered_with_its_code_and_ends_it() -> None:
    peer, server = client(), WebSocket(1024)
    assert server.receive(peer.send(CloseConnection(4001, "bye"))) == [Closed(4001, "bye")]
    assert server.ended and not server.failed
    peer.receive_data(server.data_to_send())
    (answer,) = list(peer.events())
    assert isinstance(answer, CloseConnection) and answer.code == 4001


def test_our_close_ends_it_when_the_peer_answers() -> None:
    peer, server = client(), WebSocket(1024)
    server.close(1000, "done")
    assert server.closing and not server.ended
    peer.receive_data(server.data_to_send())
    (close,) = list(peer.events())
    assert isinstance(close, CloseConnection) and (close.code, close.reason) == (1000, "done")
    assert server.receive(peer.send(close.response())) == [Closed(1000, "done")]
    assert server.ended and not server.failed
    with pytest.raises(LocalProtocolError):  # the peer is closed too
        peer.send(TextMessage("late"))


def test_a_close_code_the_rfc_forbids_closes_1011_and_raises() -> None:
    peer, server = client(), WebSocket(1024)
    with pytest.raises(ValueError, match="cannot close"):
        server.close(1005, "")
    peer.receive_data(server.data_to_send())
    (close,) = list(peer.events())
    assert isinstance(close, CloseConnection) and close.code == INTERNAL_ERROR


def raw_frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> bytes:
    mask = b"\x01\x02\x03\x04"
    header = bytes([(0x80 if fin else 0) | opcode, (0x80 if masked else 0) | len(payload)])
    if not masked:
        return header + payload
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (raw_frame(Opcode.TEXT, b"hi", masked=False), 1002),
        (raw_frame(0x3, b""), 1002),
        (raw_frame(Opcode.PING, b"", fin=False), 1002),
        (raw_frame(Opcode.CONTINUATION, b"x"), 1002),
        (raw_frame(Opcode.TEXT, b"\xff\xfe"), 1007),
        (raw_frame(Opcode.TEXT, b"ok", fin=False) + raw_frame(Opcode.CONTINUATION, b"\xc3("), 1007),
        (raw_frame(Opcode.CLOSE, (1000).to_bytes(2, "big") + b"\xff"), 1007),
    ],
)
def test_a_forbidden_frame_closes_with_the_rfc_code_after_sending_close(
    frame: bytes, code: int
) -> None:
    server = WebSocket(1024)
    (event,) = server.receive(frame)
    assert isinstance(event, Closed) and event.code == code
    assert server.ended and server.failed
    peer = client()
    peer.receive_data(server.data_to_send())
    (close,) = list(peer.events())
    assert isinstance(close, CloseConnection) and close.code == code


def deflating_pair(max_message_size: int) -> tuple[Connection, WebSocket]:
    """A client and the server's WebSocket that agreed on permessage-deflate."""
    offer = [*REQUEST, (b"sec-websocket-extensions", b"permessage-deflate")]
    acceptance = accept(offer, None, [], WebSocketSettings(max_message_size=max_message_size))
    agreed = dict(acceptance.headers)[b"sec-websocket-extensions"].decode()
    extensions = client_extensions_handshake([agreed], [PerMessageDeflate()])
    peer = Connection(ConnectionType.CLIENT, extensions)
    return peer, WebSocket(max_message_size, acceptance.extensions)


def test_a_compressed_message_round_trips_inflated() -> None:
    peer, server = deflating_pair(1 << 20)
    message = "compress me " * 10_000
    data = peer.send(TextMessage(message))
    assert len(data) < len(message) // 10
    assert server.receive(data) == [Message(message)]
    server.send(message)
    answer = server.data_to_send()
    assert len(answer) < len(message) // 10
    peer.receive_data(answer)
    assert [event.data for event in peer.events()] == [message]  # type: ignore[attr-defined]


def test_a_decompression_bomb_stops_at_the_message_limit() -> None:
    """256 MiB of zeros compress to ~250 KiB; inflating stops at the 1 MiB limit: Close 1009."""
    peer, server = deflating_pair(1 << 20)
    bomb = peer.send(BytesMessage(bytes(256 << 20)))
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        events = server.receive(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    (event,) = events
    assert isinstance(event, Closed) and event.code == MESSAGE_TOO_BIG
    peer.receive_data(server.data_to_send())
    (close,) = list(peer.events())
    assert isinstance(close, CloseConnection) and close.code == MESSAGE_TOO_BIG


def test_a_compressed_message_is_held_to_the_limit_inflated_not_on_the_wire() -> None:
    """Random bytes grow a little when compressed: at the limit they still pass; one byte over,
    inflated, is 1009."""
    peer, server = deflating_pair(1 << 16)
    payload = random.Random(7).randbytes(1 << 16)
    data = peer.send(BytesMessage(payload))
    assert len(data) > len(payload)
    assert server.receive(data) == [Message(payload)]
    (event,) = server.receive(peer.send(BytesMessage(payload + b"x")))
    assert isinstance(event, Closed) and event.code == MESSAGE_TOO_BIG
