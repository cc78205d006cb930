"""What the fuzzers check of the HTTP/2 core: whatever arrives, it never raises, and all it sends
are whole, well-formed frames (a connection error is a GOAWAY naming its code, not an exception).

Shared by the hypothesis properties (tests/unit/protocol/test_fuzz.py) and the atheris targets
(targets.py, run by scripts/fuzz.py).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from hyperframe.frame import Frame, GoAwayFrame

from osmium.protocol.events import ConnectionFailed, Event
from osmium.protocol.h2 import ServerConnection
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: An empty client SETTINGS frame: with PREFACE, the shortest valid start of a connection.
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
FRAME_HEADER_SIZE = 9


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """One raw frame, whatever its fields: nothing is checked."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


def assert_well_formed(data: bytes) -> list[Frame]:
    """`data` is whole frames that hyperframe parses: no truncated header or body."""
    frames = []
    view = memoryview(data)
    while view:
        assert len(view) >= FRAME_HEADER_SIZE, f"truncated frame header: {bytes(view)!r}"
        parsed, length = Frame.parse_frame_header(view[:FRAME_HEADER_SIZE])
        end = FRAME_HEADER_SIZE + length
        assert len(view) >= end, f"truncated frame body: {bytes(view)!r}"
        parsed.parse_body(view[FRAME_HEADER_SIZE:end])
        frames.append(parsed)
        view = view[end:]
    return frames


def start(
    settings: ProtocolSettings | None = None, limits: Limits | None = None
) -> ServerConnection:
    """A started server connection whose preface (SETTINGS, WINDOW_UPDATE) was checked."""
    server = ServerConnection(settings or ProtocolSettings(), limits=limits)
    server.start()
    assert_well_formed(server.data_to_send())
    return server


def receive(server: ServerConnection, data: bytes, now: float) -> list[Event]:
    """`server.receive`, checked: the reply is well formed, and a connection error is a GOAWAY
    with its code, after which the core is closed and hears nothing more."""
    events = server.receive(data, now)
    frames = assert_well_formed(server.data_to_send())
    failures = [event for event in events if isinstance(event, ConnectionFailed)]
    if failures:
        assert server.closed
        goaways = [sent for sent in frames if isinstance(sent, GoAwayFrame)]
        assert goaways, f"connection error without a GOAWAY: {failures[0]}"
        assert goaways[-1].error_code == failures[0].error_code, f"GOAWAY code for {failures[0]}"
        assert server.receive(data, now) == []
    return events


def feed(chunks: Sequence[bytes], times: Sequence[float] | None = None) -> ServerConnection:
    """A fresh connection fed `chunks` as reads, one second apart unless `times` says when."""
    server = start()
    for now, chunk in zip(times or range(len(chunks)), chunks, strict=True):
        receive(server, chunk, float(now))
    return server
