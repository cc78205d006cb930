"""The vocabulary the protocol core speaks to the layers above it.

Small records, never changed once made: the transport dispatches on their type and never sees
h2 objects. Not frozen: a frozen dataclass's __init__ sets each field through
object.__setattr__, three and a half times the cost of a plain one, and a request makes at least
one of these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum

Headers = list[tuple[bytes, bytes]]


def field_value(headers: Headers, name: bytes) -> bytes | None:
    """The first `name` field's value (names are lower case, as h2 and h11 give them)."""
    for field, value in headers:
        if field == name:
            return value
    return None


class ErrorCode(IntEnum):
    """RFC 9113 §7 error codes, for the layers above the core (which never import h2)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


@dataclass(slots=True)
class Request:
    """A complete, validated request header block opened `stream_id`; `complete`: the block
    also ended the request (no body, no trailers: no EndBody follows).

    `known`: a dict shared by every Request of the connection with an equal header list (its
    block repeated), where each layer keeps what it derives from the list alone; None when the
    list is not kept."""

    stream_id: int
    headers: Headers
    complete: bool = False
    known: dict | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class Body:
    """Request body bytes; acknowledge `flow_controlled_length` once the app consumed them."""

    stream_id: int
    data: bytes
    flow_controlled_length: int


@dataclass(slots=True)
class EndBody:
    """The client finished the request body (trailers, if any, are carried here)."""

    stream_id: int
    trailers: Headers


@dataclass(slots=True)
class Reset:
    """The stream is gone: the peer reset it, or the core refused or aborted it."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class GoAway:
    """The peer sent GOAWAY: open no new streams, finish the ones in flight."""

    error_code: int
    last_stream_id: int


@dataclass(slots=True)
class ConnectionFailed:
    """A connection error: GOAWAY(`error_code`) is queued; flush it, then close the transport."""

    error_code: int
    reason: str


@dataclass(slots=True)
class TimedOut:
    """`what` (the handshake, a header block) did not complete within `seconds`: GOAWAY is
    queued (ENHANCE_YOUR_CALM); flush it, then close the transport."""

    what: str
    seconds: float


@dataclass(slots=True)
class SendTimedOut:
    """The stream's queued response made no progress (no window, or no room) for `seconds`:
    it is reset (CANCEL), and its sender must give up."""

    stream_id: int
    seconds: float


@dataclass(slots=True)
class OutputStalled:
    """The socket took none of our output for `seconds`: the peer is not reading; drop it."""

    seconds: float


@dataclass(slots=True)
class IdleTimedOut:
    """No stream ran for the keep-alive timeout (less when retiring): close gracefully."""


@dataclass(slots=True)
class PingAcknowledged:
    """The peer answered our PING (an idle one or an operator's) after `rtt` seconds."""

    rtt: float


@dataclass(slots=True)
class PingTimedOut:
    """No ACK to our PING within `seconds`: the peer is dead. GOAWAY(NO_ERROR) is queued;
    close the transport."""

    seconds: float


Event = (
    Request
    | Body
    | EndBody
    | Reset
    | GoAway
    | ConnectionFailed
    | TimedOut
    | SendTimedOut
    | OutputStalled
    | IdleTimedOut
    | PingAcknowledged
    | PingTimedOut
)
