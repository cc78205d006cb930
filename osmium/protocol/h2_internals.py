"""Everything osmium does with h2's private API, in one place.

h2 (python-hyper) leaves a few server behaviours to its subclasses (how a refused stream, a late
frame or a peer GOAWAY is handled), checks less on a frame's header than RFC 9113 asks (our frame
buffer peeks at it), and reads its configuration through validating descriptors on every frame.
What we override or read that h2 does not document lives here;
tests/unit/protocol/test_h2_internals.py fails loudly when an h2 release changes it.
"""

from __future__ import annotations

import collections
import functools
import logging
import struct
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.connection import AllowedStreamIDs, ConnectionInputs, ConnectionState
from h2.errors import ErrorCodes
from h2.exceptions import InvalidSettingsValueError
from h2.frame_buffer import FrameBuffer
from h2.settings import ChangedSetting, SettingCodes
from h2.stream import (
    STREAM_OPEN,
    H2Stream,
    H2StreamStateMachine,
    StreamClosedBy,
    StreamInputs,
    StreamState,
)
from h2.utilities import is_informational_response, normalize_inbound_headers
from h2.windows import WindowManager
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hpack.hpack import Encoder
from hyperframe.frame import (
    FRAMES,
    AltSvcFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from osmium.protocol.events import Body, EndBody, Event, Request, Reset
from osmium.protocol.h2_headers import check_received, check_request
from osmium.protocol.hpack_repeats import RepeatingBlockDecoder

#: The Enum members read on every request, looked up once: on Python 3.11 each read of an
#: Enum class's attribute goes through EnumType.__getattr__'s slot (a method-wrapper made and
#: freed, some 850 instructions; Python 3.12 dropped that __getattr__). Thirteen of them were a
#: twentieth of a request's cost.
IDLE, OPEN, CLOSED = StreamState.IDLE, StreamState.OPEN, StreamState.CLOSED
HALF_CLOSED_REMOTE = StreamState.HALF_CLOSED_REMOTE
HALF_CLOSED_LOCAL = StreamState.HALF_CLOSED_LOCAL
SERVER_OPEN, CONNECTION_IDLE = ConnectionState.SERVER_OPEN, ConnectionState.IDLE
CLOSED_BY_SEND_END_STREAM = StreamClosedBy.SEND_END_STREAM
CLIENT_STREAM_PARITY = int(AllowedStreamIDs.ODD)
MAX_CONCURRENT_STREAMS = SettingCodes.MAX_CONCURRENT_STREAMS
INITIAL_WINDOW_SIZE = SettingCodes.INITIAL_WINDOW_SIZE
MAX_FRAME_SIZE = SettingCodes.MAX_FRAME_SIZE

#: DATA after our RST_STREAM that carries less than this is an ignored frame; larger ones cost
#: the peer what an upload costs (and a client's in-flight upload is made of them).
TINY_LATE_DATA = 1024


class FrameIgnored(h2.events.Event):
    """A frame h2 read and dropped without an event of its own: it spends the ignored-frame
    budget, and means nothing to the transport."""


#: The one instance our h2 subclass reports (it carries nothing, so it is never allocated again).
FRAME_IGNORED = FrameIgnored()


class CompressionError(h2.exceptions.ProtocolError):
    error_code = ErrorCodes.COMPRESSION_ERROR


class FrameLogger:
    """Routes h2's per-frame debug and trace output to the `osmium.frames` logger."""

    def __init__(self) -> None:
        self._logger = logging.getLogger("osmium.frames")

    def debug(self, fmtstr: str, *args: object) -> None:
        self._logger.debug(fmtstr, *args)

    trace = debug


class PlainConfig(h2.config.H2Configuration):
    """h2's configuration with its options as plain attributes.

    h2 reads `client_side`, the header validation options and `header_encoding` on every frame
    and header through descriptors that validate on write (about 17 Python calls a request). We
    set them once, to values h2 accepts: as class attributes here they shadow the descriptors,
    and each read is a plain attribute look-up.
    """

    client_side = False
    header_encoding = None
    validate_outbound_headers = False
    normalize_outbound_headers = False
    split_outbound_cookies = False
    #: osmium checks request headers itself, in one pass (h2_headers.py).
    validate_inbound_headers = False
    normalize_inbound_headers = True


@functools.cache
def server_config(debug_frames: bool) -> PlainConfig:
    """How every server connection is configured (frames logged to `osmium.frames` if asked):
    one configuration for all of them, which neither h2 nor we change."""
    return PlainConfig(
        client_side=False,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
        normalize_inbound_headers=True,
        logger=FrameLogger() if debug_frames else None,
    )


#: The local settings h2 starts a connection with.
H2_LOCAL_SETTINGS = {
    SettingCodes.MAX_CONCURRENT_STREAMS: 100,
    SettingCodes.MAX_HEADER_LIST_SIZE: h2.connection.H2Connection.DEFAULT_MAX_HEADER_LIST_SIZE,
}
#: RFC 9113 §6.9.2: every flow-control window's size until SETTINGS or WINDOW_UPDATE change it.
DEFAULT_WINDOW_SIZE = 65_535


@functools.cache
def _dispatch_names() -> dict[type[Frame], str]:
    """h2's frame dispatch table as frame class: method name, read once from an h2 connection,
    and the same methods for the RECEIVED_CLASSES (h2 dispatches on the exact class)."""
    table = h2.connection.H2Connection()._frame_dispatch_table
    names = {kind: method.__name__ for kind, method in table.items()}
    names |= {
        RECEIVED_CLASSES[kind]: name for kind, name in names.items() if kind in RECEIVED_CLASSES
    }
    return names


@functools.lru_cache(maxsize=8)
def _settings_frame(values: tuple[tuple[SettingCodes | int, int], ...]) -> bytes:
    """A SETTINGS frame carrying `values`, as h2 writes it."""
    frame = SettingsFrame(0)
    for setting, value in values:
        frame.settings[setting] = value
    return frame.serialize()


class FrameDispatch:
    """h2's frame dispatch table, each method bound when a frame needs it: a connection reads
    only a few frames through h2 (its first SETTINGS, WINDOW_UPDATE, PING, GOAWAY), and
    binding h2's 24 entries as it opened was a tenth of its start."""

    __slots__ = ("_connection", "_names")

    def __init__(self, connection: h2.connection.H2Connection) -> None:
        self._connection = connection
        self._names = _dispatch_names()

    def __getitem__(self, kind: type[Frame]) -> Callable[[Frame], tuple[list, list]]:
        return getattr(self._connection, self._names[kind])

    def __contains__(self, kind: type[Frame]) -> bool:
        return kind in self._names


#: What h2's Settings answers for MAX_CONCURRENT_STREAMS when it was never set.
UNLIMITED_STREAMS = 2**32 + 1


@functools.lru_cache(maxsize=8)
def _starting_values(client: bool, initial_values: tuple[tuple[SettingCodes, int], ...]) -> dict:
    """The values h2's Settings starts with: its defaults, then `initial_values`, which it
    checks (InvalidSettingsValueError)."""
    settings = h2.settings.Settings(client, dict(initial_values))
    return {key: values[0] for key, values in settings._settings.items()}


class LeanSettings(h2.settings.Settings):
    """h2's Settings, each setting's values (the current one, then those not yet acknowledged)
    in a list where h2 keeps a deque: an empty deque costs 600 bytes, and each connection holds
    two Settings of five to eight entries (9 KiB of an idle connection's 25)."""

    def __init__(
        self, client: bool = True, initial_values: dict[SettingCodes, int] | None = None
    ) -> None:
        # What h2's Settings.__init__ sets, from values it made and checked once (a connection
        # makes two of these: validating each value each time was a twentieth of its start).
        self._client = client
        starting = _starting_values(client, tuple((initial_values or {}).items()))
        self._settings = {key: [value] for key, value in starting.items()}  # type: ignore[misc]

    def current_values(self) -> tuple[tuple[SettingCodes | int, int], ...]:
        """What `items()` gives (the values in force), without Mapping's iteration."""
        return tuple([(key, values[0]) for key, values in self._settings.items()])  # type: ignore[misc]

    def acknowledge(self) -> dict[SettingCodes | int, ChangedSetting]:
        changed = {}
        for key, values in self._settings.items():
            if len(values) > 1:
                old = values.pop(0)  # type: ignore[attr-defined]
                changed[key] = ChangedSetting(key, old, values[0])
        return changed

    @property
    def max_concurrent_streams(self) -> int:
        """Read on every new stream (by h2 and by us): a dict look-up, not Mapping.get's
        __getitem__ and KeyError."""
        values = self._settings.get(MAX_CONCURRENT_STREAMS)
        current = values[0] if values else None
        return UNLIMITED_STREAMS if current is None else current

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[MAX_CONCURRENT_STREAMS] = value

    @property
    def initial_window_size(self) -> int:
        """Read at every new stream, as are the frame sizes: the current value (these two
        settings always have one), without Mapping's __getitem__."""
        return self._settings[INITIAL_WINDOW_SIZE][0]  # type: ignore[return-value]

    @initial_window_size.setter
    def initial_window_size(self, value: int) -> None:
        self[INITIAL_WINDOW_SIZE] = value

    @property
    def max_frame_size(self) -> int:
        return self._settings[MAX_FRAME_SIZE][0]  # type: ignore[return-value]

    @max_frame_size.setter
    def max_frame_size(self, value: int) -> None:
        self[MAX_FRAME_SIZE] = value

    def __setitem__(self, key: SettingCodes | int, value: int) -> None:
        invalid = h2.settings._validate_setting(key, value)
        if invalid:
            raise InvalidSettingsValueError(
                f"Setting {key} has invalid value {value}", error_code=invalid
            )
        values = self._settings.get(key)
        if values is None:
            values = self._settings[key] = [None]  # type: ignore[assignment,list-item]
        values.append(value)


class ServerH2Connection(h2.connection.H2Connection):
    """h2 with the server behaviour RFC 9113 asks for where h2's choice differs.

    - A stream over MAX_CONCURRENT_STREAMS, or above the last stream id of our GOAWAY, is refused
      with RST_STREAM(REFUSED_STREAM) (§5.1.2, §6.8) instead of failing the whole connection;
      its header block is still decoded so HPACK state stays in sync.
    - A peer GOAWAY lets streams in flight finish (§6.8) instead of closing the connection at once.
    - Frames h2 drops silently (on closed streams, ALTSVC from a client) are reported as
      FRAME_IGNORED, so that a flood of them spends a budget.
    """

    #: How many closed streams h2 remembers (to tell a late frame after RST_STREAM from a protocol
    #: error). h2's 65536 costs megabytes per long-lived connection; 4096 covers in-flight races.
    MAX_CLOSED_STREAMS = 4096

    def __init__(
        self,
        config: h2.config.H2Configuration,
        local_settings: LeanSettings | None = None,
        encoder: Encoder | None = None,
        incoming_buffer: FrameBuffer | None = None,
        max_header_list_size: int = h2.connection.H2Connection.DEFAULT_MAX_HEADER_LIST_SIZE,
    ) -> None:
        """What h2's __init__ sets (not called), with the objects a server connection uses from
        the start: not h2's own ones to be replaced (two Settings whose values it checks, an
        Encoder, a Decoder, a FrameBuffer). Without arguments, h2's defaults."""
        self.config = config
        self.state_machine = h2.connection.H2ConnectionStateMachine()
        self.streams: dict[int, H2Stream] = {}
        self.highest_inbound_stream_id = 0
        self.highest_outbound_stream_id = 0
        self.encoder = Encoder() if encoder is None else encoder
        self.decoder = RepeatingBlockDecoder(max_header_list_size)
        if local_settings is None:
            local_settings = LeanSettings(False, H2_LOCAL_SETTINGS)
        self.local_settings = local_settings
        self.remote_settings = LeanSettings(client=True)  # the peer is a client
        self.outbound_flow_control_window = self.remote_settings.initial_window_size
        self.max_outbound_frame_size = self.remote_settings.max_frame_size
        self.max_inbound_frame_size = local_settings.max_frame_size
        self.incoming_buffer = FrameBuffer(True) if incoming_buffer is None else incoming_buffer
        self._header_frames: list[Frame] = []
        self._data_to_send = bytearray()
        #: How each forgotten stream closed, oldest first, bounded by `_open_streams`, where
        #: h2's SizeLimitDict checks its size at every insertion. Ordered, so that the oldest go
        #: in O(1): a plain dict's iteration from the front would step over every slot deleted
        #: there since its last resize.
        self._closed_streams = collections.OrderedDict()
        # The connection's window is RFC 9113's 65,535 bytes to start with, whatever SETTINGS say.
        self._inbound_flow_control_window_manager = WindowManager(DEFAULT_WINDOW_SIZE)
        self._frame_dispatch_table = FrameDispatch(self)
        #: What is to be sent, frame by frame. A DATA frame is its 9-byte header and its payload
        #: as given: h2 would serialise it (a copy), append that to a bytearray (another) and
        #: copy the bytearray out in data_to_send (a third); here the payload is copied once, in
        #: data_to_send's join.
        self._chunks: list[bytes] = []
        #: Inside `receive_counting_resets`, whose RST_STREAM frames each answer a frame of the
        #: peer: they are counted into `provoked_resets`.
        self._receiving = False
        self.provoked_resets = 0
        #: --debug-frames: h2's own send path, which logs each frame.
        self._logging_frames = not isinstance(config.logger, h2.config.DummyLogger)

    def initiate_connection(self) -> None:
        """h2's: our SETTINGS, the frame made once for each set of values (every connection of
        a worker sends the same). IDLE stays IDLE, as h2's transition leaves it."""
        if self._logging_frames or self.state_machine.state is not CONNECTION_IDLE:
            super().initiate_connection()
            return
        self._chunks.append(_settings_frame(self.local_settings.current_values()))

    def increment_flow_control_window(self, increment: int, stream_id: int | None = None) -> None:
        """h2's, for the connection's window: its WINDOW_UPDATE packed here, without a frame
        object. IDLE stays IDLE, as h2's transition leaves it."""
        if (
            stream_id is not None
            or self._logging_frames
            or not 1 <= increment <= self.MAX_WINDOW_INCREMENT
        ):
            super().increment_flow_control_window(increment, stream_id)
            return
        if self.state_machine.state is not CONNECTION_IDLE:
            self.state_machine.process_input(ConnectionInputs.SEND_WINDOW_UPDATE)
        self._inbound_flow_control_window_manager.window_opened(increment)
        self._queue_frame(WINDOW_UPDATE_TYPE, 0, 0, WINDOW_INCREMENT.pack(increment))

    def send_headers(  # type: ignore[override]
        self,
        stream_id: int,
        headers: list[tuple[bytes, bytes]],
        end_stream: bool = False,
        priority_weight: int | None = None,
        priority_depends_on: int | None = None,
        priority_exclusive: bool | None = None,
    ) -> None:
        """h2's send_headers for a response (or trailers) on an open stream, framed here: the
        same state changes and the same bytes as h2's, without its HeadersFrame and Flags
        objects, frame list and debug calls (a fifth of a small request's cost). A new stream,
        str fields, priority arguments or frames being logged go through h2 itself."""
        stream = self.streams.get(stream_id)
        if (
            stream is None
            or self._logging_frames
            or not headers
            or type(headers[0][0]) is not bytes  # h2 encodes str fields first
            or priority_weight is not None
            or priority_depends_on is not None
            or priority_exclusive is not None
        ):
            super().send_headers(
                stream_id, headers, end_stream, priority_weight, priority_depends_on,
                priority_exclusive,
            )  # fmt: skip
            return
        if self.state_machine.state is not SERVER_OPEN:
            self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)  # raises, as in h2
        name, status = headers[0]  # a response's :status comes first
        informational = (
            status[:1] == b"1" if name == b":status" else is_informational_response(headers)
        )
        if informational and end_stream:
            raise h2.exceptions.ProtocolError("Cannot set END_STREAM on informational responses.")
        machine = stream.state_machine
        if (
            not informational
            and machine.client is False
            and not machine.headers_sent
            and machine.state in ANSWERING_STATES
        ):
            machine.headers_sent = True  # all that response_sent does for a request's response
        else:
            machine.process_input(
                StreamInputs.SEND_INFORMATIONAL_HEADERS
                if informational
                else StreamInputs.SEND_HEADERS
            )
        block = self.encoder.encode(headers)
        if end_stream:
            _send_end_stream(machine)
        if machine.trailers_sent and not end_stream:
            raise h2.exceptions.ProtocolError("Trailers must have END_STREAM set.")
        stream.request_method = None  # h2 takes it from the headers sent: a response has none
        self._queue_header_block(stream_id, block, end_stream, stream.max_outbound_frame_size)

    def _queue_header_block(
        self, stream_id: int, block: bytes, end_stream: bool, frame_size: int
    ) -> None:
        """HEADERS, then CONTINUATION frames if the block needs them (RFC 9113 §6.2, §6.10)."""
        first_flags = END_STREAM_FLAG if end_stream else 0
        if len(block) <= frame_size:
            self._queue_frame(HEADERS_TYPE, first_flags | END_HEADERS_FLAG, stream_id, block)
            return
        pieces = [block[start : start + frame_size] for start in range(0, len(block), frame_size)]
        for index, piece in enumerate(pieces):
            kind = HEADERS_TYPE if index == 0 else CONTINUATION_TYPE
            flags = first_flags if index == 0 else 0
            if index == len(pieces) - 1:
                flags |= END_HEADERS_FLAG
            self._queue_frame(kind, flags, stream_id, piece)

    def _queue_frame(
        self, kind: int, flags: int, stream_id: int, payload: bytes | memoryview
    ) -> None:
        """A frame whose payload goes out as given: copied once, in data_to_send's join."""
        size = len(payload)
        self._chunks += (FRAME_HEADER.pack(size >> 8, size & 0xFF, kind, flags, stream_id), payload)

    def send_data(
        self,
        stream_id: int,
        data: bytes | memoryview,
        end_stream: bool = False,
        pad_length: int | None = None,
    ) -> None:
        """h2's send_data, framed here for an open stream without padding: the same checks,
        windows and state changes, the payload queued as given."""
        stream = self.streams.get(stream_id)
        if stream is None or pad_length is not None or self._logging_frames:
            super().send_data(stream_id, data, end_stream, pad_length)
            return
        size = len(data)
        window = min(self.outbound_flow_control_window, stream.outbound_flow_control_window)
        if size > window:
            raise h2.exceptions.FlowControlError(
                f"Cannot send {size} bytes, flow control window is {window}"
            )
        if size > self.max_outbound_frame_size:
            raise h2.exceptions.FrameTooLargeError(
                f"Cannot send frame size {size}, max frame size is {self.max_outbound_frame_size}"
            )
        if self.state_machine.state is not SERVER_OPEN:
            self.state_machine.process_input(ConnectionInputs.SEND_DATA)  # raises, as in h2
        machine = stream.state_machine
        if machine.state not in ANSWERING_STATES:  # where SEND_DATA changes nothing
            machine.process_input(StreamInputs.SEND_DATA)
        flags = 0
        if end_stream:
            _send_end_stream(machine)
            flags = END_STREAM_FLAG
        stream.outbound_flow_control_window -= size
        self._queue_frame(DATA_TYPE, flags, stream_id, data)
        self.outbound_flow_control_window -= size

    def send_response(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], data: bytes
    ) -> bool:
        """A whole response to a whole request, as HEADERS and one DATA frame that ends the
        stream: what send_headers then send_data(end_stream=True) do, in one step. False, and
        nothing done, unless the request is complete (HALF_CLOSED_REMOTE), `headers` is a final
        response's and `data` fits one frame within both windows: then those two apply."""
        stream = self.streams.get(stream_id)
        if stream is None or self._logging_frames or self.state_machine.state is not SERVER_OPEN:
            return False
        machine = stream.state_machine
        name, status = headers[0]
        size = len(data)
        window = self.outbound_flow_control_window
        if stream.outbound_flow_control_window < window:
            window = stream.outbound_flow_control_window
        if (
            machine.state is not HALF_CLOSED_REMOTE
            or machine.client is not False
            or machine.headers_sent
            or type(name) is not bytes
            or name != b":status"
            or status[:1] == b"1"
            or size > window
            or size > self.max_outbound_frame_size
        ):
            return False
        machine.headers_sent = True  # response_sent
        self._queue_header_block(stream_id, self.encoder.encode(headers), False,
                                 stream.max_outbound_frame_size)  # fmt: skip
        stream.request_method = None
        machine.state = CLOSED  # send_end_stream
        machine.stream_closed_by = CLOSED_BY_SEND_END_STREAM
        stream.outbound_flow_control_window -= size
        self._queue_frame(DATA_TYPE, END_STREAM_FLAG, stream_id, data)
        self.outbound_flow_control_window -= size
        return True

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        """h2's, for a stream it still tracks, its WINDOW_UPDATE frames packed here without
        frame objects: the same windows and the same frames."""
        stream = self.streams.get(stream_id)
        if stream is None or acknowledged_size < 0 or self._logging_frames:
            super().acknowledge_received_data(acknowledged_size, stream_id)
            return
        increment = _processed(self._inbound_flow_control_window_manager, acknowledged_size)
        if increment:
            self._queue_frame(WINDOW_UPDATE_TYPE, 0, 0, WINDOW_INCREMENT.pack(increment))
        if STREAM_OPEN[stream.state_machine.state]:
            increment = _processed(stream._inbound_window_manager, acknowledged_size)
            if increment:
                payload = WINDOW_INCREMENT.pack(increment)
                self._queue_frame(WINDOW_UPDATE_TYPE, 0, stream_id, payload)

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        for frame in frames:
            if type(frame) is DataFrame and not frame.pad_length:
                flags = END_STREAM_FLAG if "END_STREAM" in frame.flags else 0
                self._queue_frame(DATA_TYPE, flags, frame.stream_id, frame.data)
            else:
                if self._receiving and frame.type == RstStreamFrame.type:
                    self.provoked_resets += 1
                self._chunks.append(frame.serialize())

    def data_to_send(self, amount: int | None = None) -> bytes:
        if self._data_to_send:  # written by h2 itself: the SETTINGS of initiate_connection
            self._chunks.insert(0, bytes(self._data_to_send))
            self._data_to_send = bytearray()
        data = b"".join(self._chunks)
        self._chunks.clear()
        if amount is not None and len(data) > amount:
            self._chunks.append(data[amount:])
            data = data[:amount]
        return data

    def clear_outbound_data_buffer(self) -> None:
        super().clear_outbound_data_buffer()
        self._chunks.clear()

    goaway_last_stream_id: int | None = None
    _open_stream_count = 0

    def receive_counting_resets(
        self, data: bytes | memoryview, limit: int
    ) -> tuple[list[Event], list[h2.events.Event], bytes | memoryview]:
        """The frames at the start of `data` that take the short path, or else at most `limit`
        bytes through h2's `receive_data`; returns the short path's events (ours, already) or
        h2's, and the bytes not read yet. (Not both in one call: a connection error in h2's
        part would lose the short path's events.) The RST_STREAMs queued meanwhile are counted
        into `provoked_resets`.
        """
        self._receiving = True
        try:
            taken, rest = self._receive_short_path(data)
            if rest and not taken:
                size = self._h2_part(rest, limit)
                return taken, self.receive_data(rest[:size]), rest[size:]
            return taken, [], rest
        finally:
            self._receiving = False

    def _h2_part(self, data: memoryview, limit: int) -> int:
        """How much of `data` h2's own path reads: at most `limit` bytes, and no further than
        the next HEADERS or DATA frame after its first frame, which the short path may take
        then (a connection's first read carries the preface, SETTINGS and WINDOW_UPDATE, and
        then its first request)."""
        buffer = self.incoming_buffer
        if buffer._data:  # a frame begun earlier: its end is not where the next header is
            return limit
        offset = buffer._preamble_len
        end = min(len(data), limit)
        first = True
        while offset + FRAME_HEADER_SIZE <= end:
            if data[offset + 3] in SHORT_PATH_TYPES and not first:
                return offset
            first = False
            offset += FRAME_HEADER_SIZE + int.from_bytes(data[offset : offset + 3], "big")
        return limit

    def _open_streams(self, remainder: int) -> int:
        """h2's count of the open streams whose id has this parity, which also moves the
        closed ones out of `streams` into the record of how they closed; the record then keeps
        its newest MAX_CLOSED_STREAMS."""
        streams = self.streams
        count = 0
        closed = []
        for stream_id, stream in streams.items():
            state = stream.state_machine.state
            if STREAM_OPEN[state] and stream_id % 2 == remainder:
                count += 1
            elif state is CLOSED:
                closed.append(stream_id)
        record = self._closed_streams
        for stream_id in closed:
            record[stream_id] = streams.pop(stream_id).state_machine.stream_closed_by
        for _ in range(len(record) - self.MAX_CLOSED_STREAMS):
            record.popitem(last=False)
        return count

    @property
    def open_inbound_streams(self) -> int:
        # h2 reads this (and cleans up closed streams) right before opening a stream; capping it
        # keeps h2's own limit check, which would end the connection, from ever firing.
        self._open_stream_count = super().open_inbound_streams
        return min(self._open_stream_count, self.local_settings.max_concurrent_streams - 1)

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list, list]:
        stream_id = frame.stream_id
        is_new_stream = stream_id not in self.streams
        try:
            frames, events = super()._receive_headers_frame(frame)
            check_received(events)
        except h2.exceptions.ProtocolError as error:
            return self._malformed_request(error, stream_id, is_new_stream)
        if not is_new_stream:
            return frames, events
        if self._open_stream_count >= self.local_settings.max_concurrent_streams or (
            self.goaway_last_stream_id is not None and stream_id > self.goaway_last_stream_id
        ):
            return self._refuse(stream_id, ErrorCodes.REFUSED_STREAM, frames, events)
        if "END_STREAM" in frame.flags and self.streams[stream_id]._expected_content_length:
            # §8.1.1: a content-length that no DATA frame can match makes the request malformed.
            return self._refuse(stream_id, ErrorCodes.PROTOCOL_ERROR, frames, events)
        return frames, events

    def _malformed_request(
        self, error: h2.exceptions.ProtocolError, stream_id: int, is_new_stream: bool
    ) -> tuple[list, list]:
        """A header block h2 or check_received refused: a stream error where the block opened
        a stream and decoded, else the connection error (raised)."""
        cause = error.__cause__
        # h2 reports every HPACK decoding failure as PROTOCOL_ERROR; RFC 9113 §4.3 says
        # COMPRESSION_ERROR (an oversized header list stays h2's ENHANCE_YOUR_CALM).
        if isinstance(cause, HPACKError) and not isinstance(cause, OversizedHeaderListError):
            raise CompressionError(str(error)) from error
        if is_new_stream and stream_id in self.streams:
            # The block decoded (HPACK state is in sync) and opened a stream, but the request
            # is malformed: §8.1.1 makes that an error of this stream only.
            return self._refuse(stream_id, ErrorCodes.PROTOCOL_ERROR, [], [])
        raise error

    def _refuse(self, stream_id: int, error_code: int, frames: list, events: list) -> tuple:
        """Reset a stream the peer just opened; the app never hears of it."""
        self._prepare_for_sending(frames)
        machine = self.streams[stream_id].state_machine
        if machine.state in UNOPENED_STATES:
            # h2 refused the block before the stream opened (a request with a 1xx :status,
            # read as a response), and allows no RST_STREAM from there: sent here instead.
            machine.state = CLOSED
            machine.stream_closed_by = StreamClosedBy.SEND_RST_STREAM
            reset = RstStreamFrame(stream_id)
            reset.error_code = error_code
            self._prepare_for_sending([reset])
        else:
            self.reset_stream(stream_id, error_code)
        return [], [event for event in events if getattr(event, "stream_id", None) != stream_id]

    def _receive_short_path(
        self, data: bytes | memoryview
    ) -> tuple[list[Event], bytes | memoryview]:
        """The frames at the start of `data` (and the one an earlier read left unfinished) that
        open a stream with a whole request header block, or carry a body on a stream the client
        is still sending on, received without h2's frame buffer, frame objects, dispatch, trace
        formatting and events, and without counting every stream at each new one: the same
        checks, windows and state changes as h2's (and our overrides'), and what h2's events
        would mean, as our events (Request, Body, EndBody, Reset). Returns those and the bytes
        from the first frame not taken here (a view), which go through h2's own path.

        `data` as bytes is a whole read: one that is a single request frame (a client sending a
        request at a time) is taken without the loop, its views and its copies."""
        buffer = self.incoming_buffer
        # (buffer._headers_buffer: header_block_pending without a property's call)
        if self._logging_frames or not buffer.preface_received or buffer._headers_buffer:
            return [], memoryview(data)
        events: list[Event] = []
        max_size = self.max_inbound_frame_size
        try:
            pending = buffer._data
            if pending:
                data = self._finish_pending_frame(pending, memoryview(data), max_size, events)
                if pending:  # still unfinished, or not one this takes
                    return events, data
            elif type(data) is bytes:
                if len(data) >= FRAME_HEADER_SIZE and data[3] == HEADERS_TYPE:
                    taken = self._short_path_for(data, 0, max_size)
                    if taken is not None and FRAME_HEADER_SIZE + taken[2] == len(data):
                        _, stream_id, _, end_stream = taken
                        block = data[FRAME_HEADER_SIZE:]
                        return self._take_request(stream_id, block, end_stream), b""
                data = memoryview(data)
            offset = 0
            end = len(data)
            while end - offset >= FRAME_HEADER_SIZE:
                taken = self._short_path_for(data, offset, max_size)
                if taken is None:
                    break
                take, target, size, end_stream = taken
                start = offset + FRAME_HEADER_SIZE
                if start + size > end:  # the rest comes with a later read
                    pending += data[offset:]
                    offset = end
                    break
                offset = start + size
                events += take(target, bytes(data[start:offset]), end_stream)
        except h2.exceptions.ProtocolError as error:
            self._terminate_connection(error.error_code)
            raise
        return events, data[offset:]

    def _finish_pending_frame(
        self, pending: bytearray, data: memoryview, max_size: int, events: list
    ) -> memoryview:
        """Completes a frame begun in h2's buffer from `data` and takes it, if it takes the
        short path; returns the bytes after it. Any other frame is left, untouched, to h2 (its
        buffer stays non-empty)."""
        header = pending[:FRAME_HEADER_SIZE]
        header += data[: FRAME_HEADER_SIZE - len(header)]
        if len(header) < FRAME_HEADER_SIZE:
            return data
        taken = self._short_path_for(header, 0, max_size)
        if taken is None:
            return data
        take, target, size, end_stream = taken
        missing = FRAME_HEADER_SIZE + size - len(pending)
        pending += data[:missing]
        if missing > len(data):
            return data[len(data) :]
        payload = bytes(pending[FRAME_HEADER_SIZE:])
        pending.clear()
        events += take(target, payload, end_stream)
        return data[missing:]

    def _short_path_for(
        self, data: bytes | bytearray | memoryview, offset: int, max_size: int
    ) -> tuple[Callable[[Any, bytes, bool], list], Any, int, bool] | None:
        """How the frame whose header is at `offset` is taken on the short path (the method,
        its stream or stream id, the payload size, END_STREAM), if it is:

        - DATA without padding, within our MAX_FRAME_SIZE, on a stream the client may send on,
          and not empty unless it ends the stream (empty ones spend a flood budget, which h2's
          path checks a slice at a time);
        - HEADERS with a whole header block, without padding or priority, opening a new stream
          while fewer than MAX_CONCURRENT_STREAMS are tracked and no final GOAWAY is out (the
          others may be refused, which h2's path decides).
        """
        high, low, kind, flags, stream_id = FRAME_HEADER.unpack_from(data, offset)
        size = high << 8 | low
        if size > max_size:
            return None
        end_stream = bool(flags & END_STREAM_FLAG)
        stream_id &= STREAM_ID_MASK
        if kind == DATA_TYPE:
            if flags & PADDED_FLAG or not (size or end_stream):
                return None
            stream = self.streams.get(stream_id)
            if stream is None or stream.state_machine.state not in RECEIVING_STATES:
                return None
            return self._take_body, stream, size, end_stream
        if (
            kind != HEADERS_TYPE
            or flags & (PADDED_FLAG | PRIORITY_FLAG)
            or not flags & END_HEADERS_FLAG
            or stream_id <= self.highest_inbound_stream_id
            or self.goaway_last_stream_id is not None
            or size > self.incoming_buffer.max_header_block_size
        ):
            return None
        if len(self.streams) >= self._prune_at:
            self._prune_closed_streams()
        if len(self.streams) >= self.local_settings._settings[MAX_CONCURRENT_STREAMS][0]:
            return None  # (the value in force: ours is always set)
        return self._take_request, stream_id, size, end_stream

    #: How many streams h2 may track before the short path moves the closed ones out: h2 does
    #: it at every new stream, scanning them all; here the bound doubles with the open ones (a
    #: closed stream costs about 450 bytes).
    _prune_at = 4

    def _prune_closed_streams(self) -> None:
        self._open_streams(1)  # counts the open client streams, forgets the closed ones
        self._prune_at = max(ServerH2Connection._prune_at, 2 * len(self.streams))

    def _take_request(self, stream_id: int, block: bytes, end_stream: bool) -> list[Event]:
        """What h2's _receive_headers_frame and ours do with a HEADERS frame that opens a
        stream the limits allow, in their order."""
        self.incoming_buffer.header_block_size = len(block)
        try:
            headers = h2.connection._decode_headers(self.decoder, block)
            if self.state_machine.state is not SERVER_OPEN:
                self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)  # raises, as in h2
            stream = self._open_client_stream(stream_id)
            request = self._request_received(stream, headers, end_stream, self.decoder.memo)
        except h2.exceptions.ProtocolError as error:
            return self._malformed_request(error, stream_id, is_new_stream=True)[1]
        if end_stream and stream._expected_content_length:
            return self._refuse(stream_id, ErrorCodes.PROTOCOL_ERROR, [], [])[1]
        return [request]

    def _open_client_stream(self, stream_id: int) -> H2Stream:
        """h2's _begin_new_stream for a client's stream whose id is above every earlier one
        (the short path checked), without its debug calls."""
        if stream_id % 2 != CLIENT_STREAM_PARITY:
            raise h2.exceptions.ProtocolError("Invalid stream ID for peer.")
        # The windows in force (always set) without the properties' calls, and no keywords:
        # a class called with keywords gets them as a dict.
        inbound_window = self.local_settings._settings[INITIAL_WINDOW_SIZE][0]
        outbound_window = self.remote_settings._settings[INITIAL_WINDOW_SIZE][0]
        stream = H2Stream(stream_id, self.config, inbound_window, outbound_window)
        stream.max_outbound_frame_size = self.max_outbound_frame_size
        self.streams[stream_id] = stream
        self.highest_inbound_stream_id = stream_id
        return stream

    @staticmethod
    def _request_received(
        stream: H2Stream, headers: list, end_stream: bool, known: dict | None
    ) -> Request:
        """What H2Stream.receive_headers and check_received do with a request's header list on
        a new stream, without its state machine's dispatch, flag objects and generator pipeline:
        IDLE to OPEN (request_received), to HALF_CLOSED_REMOTE on END_STREAM
        (stream_half_closed), the content-length, split cookie fields joined as one, last
        (normalize_inbound_headers), and the RFC 9113 checks (check_request: a 1xx :status makes
        it no request). `headers` is the decoder's fresh list: it becomes the Request's unless
        a cookie is in it.

        `known`: the decoder's memo for this header list (None: none is kept). Once a list has
        passed, what it showed (its content-length, a cookie) is kept there, and an equal list,
        which would pass again, is not checked again: a client repeats the same few requests."""
        machine = stream.state_machine
        machine.client = False
        machine.headers_received = True
        machine.state = HALF_CLOSED_REMOTE if end_stream else OPEN
        if known:
            stream._expected_content_length = known["content-length"]
            cookie = known["cookie"]
        else:
            stream._initialize_content_length(headers)
            cookie = any(name == b"cookie" for name, _ in headers)
        if cookie:
            headers = list(normalize_inbound_headers(headers, None))  # type: ignore[arg-type]
        if not known:
            check_request(headers)
            if known is not None:
                known["content-length"] = stream._expected_content_length
                known["cookie"] = cookie
        return Request(stream.stream_id, headers, end_stream, known)

    def _take_body(self, stream: H2Stream, payload: bytes, end_stream: bool) -> list[Event]:
        """What h2's _receive_data_frame and H2Stream.receive_data do with an unpadded DATA
        frame on an open stream, in their order."""
        size = len(payload)
        if self.state_machine.state is not SERVER_OPEN:
            self.state_machine.process_input(ConnectionInputs.RECV_DATA)  # raises, as in h2
        _consumed(self._inbound_flow_control_window_manager, size)
        # RECEIVING_STATES stay as they are on RECV_DATA, and a client's stream got there by
        # its HEADERS: the transition's one action is data_received's event.
        _consumed(stream._inbound_window_manager, size)
        stream_id = stream.stream_id
        try:
            stream._track_content_length(size, end_stream)
        except h2.exceptions.InvalidBodyLengthError:
            self._reset_malformed_body(stream_id, size)
            return [Reset(stream_id, int(ErrorCodes.PROTOCOL_ERROR))]
        if end_stream:
            stream.state_machine.process_input(StreamInputs.RECV_END_STREAM)
            return [Body(stream_id, payload, size), EndBody(stream_id, [])]
        return [Body(stream_id, payload, size)]

    def _reset_malformed_body(self, stream_id: int, size: int) -> None:
        """§8.1.1: more or less DATA than content-length is malformed: a stream error."""
        self.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
        self.acknowledge_received_data(size, stream_id)

    def _receive_data_frame(self, frame: DataFrame) -> tuple[list, list]:
        # §5.1: DATA arriving after *we* reset the stream is ignored (its window still returned);
        # h2 would answer every such frame with one more RST_STREAM. A small one is counted.
        reset_by_us = self._stream_closed_by(frame.stream_id) is StreamClosedBy.SEND_RST_STREAM
        try:
            frames, events = super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError:
            self._reset_malformed_body(frame.stream_id, frame.flow_controlled_length)
            error_code = ErrorCodes.PROTOCOL_ERROR
            reset = h2.events.StreamReset(
                stream_id=frame.stream_id, error_code=error_code, remote_reset=False
            )
            return [], [reset]
        if reset_by_us:
            frames = [f for f in frames if not isinstance(f, RstStreamFrame)]
            if frame.flow_controlled_length < TINY_LATE_DATA:
                events = [*events, FRAME_IGNORED]
        return frames, events

    def _receive_window_update_frame(self, frame: WindowUpdateFrame) -> tuple[list, list]:
        frames, events = super()._receive_window_update_frame(frame)
        # No WindowUpdated: the stream is closed (§5.1), there is nothing to open.
        return (frames, events) if events else (frames, [FRAME_IGNORED])

    def _receive_rst_stream_frame(self, frame: RstStreamFrame) -> tuple[list, list]:
        frames, events = super()._receive_rst_stream_frame(frame)
        # No StreamReset: the stream was closed already (§5.1), there is nothing to reset.
        return (frames, events) if events else (frames, [FRAME_IGNORED])

    def _receive_alt_svc_frame(self, frame: AltSvcFrame) -> tuple[list, list]:
        frames, events = super()._receive_alt_svc_frame(frame)
        return frames, [*events, FRAME_IGNORED]  # RFC 7838 §4: only servers send it

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list, list]:
        event = h2.events.ConnectionTerminated()
        event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def send_graceful_goaway(self, last_stream_id: int) -> None:
        """GOAWAY(NO_ERROR) without closing h2's state, so streams in flight can finish."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = ErrorCodes.NO_ERROR
        self._prepare_for_sending([frame])


#: The states of a client's stream in which we may still send on it (RFC 9113 §5.1): a
#: PUSH_PROMISE (§6.6) or a 1xx response before the final one (§8.1). h2 keeps each of them on
#: SEND_HEADERS (response_sent) and on SEND_DATA.
ANSWERING_STATES = frozenset({OPEN, HALF_CLOSED_REMOTE})
#: Where h2 leaves a stream whose opening header block it refused (before or at the transition).
UNOPENED_STATES = frozenset({IDLE, CLOSED})
#: The states of a client's stream in which it may still send DATA on it (§5.1).
RECEIVING_STATES = frozenset({OPEN, HALF_CLOSED_LOCAL})


def _consumed(window: WindowManager, size: int) -> None:
    """WindowManager.window_consumed, one call fewer for each DATA frame."""
    window.current_window_size -= size
    if window.current_window_size < 0:
        raise h2.exceptions.FlowControlError("Flow control window shrunk below 0")


def _processed(window: WindowManager, size: int) -> int:
    """WindowManager.process_bytes and its _maybe_update_window in one call (two fewer for each
    body chunk the app reads): the increment to send now, if any. The window reopens once half
    of it is read, or once a shut window has 1024 bytes (a quarter of a small one) read."""
    processed = window._bytes_processed + size
    current = window.current_window_size
    largest = window.max_window_size
    if (current == 0 and processed > min(1024, largest // 4)) or processed >= largest // 2:
        increment = min(processed, largest - current)
        window._bytes_processed = 0
        window.current_window_size = current + increment
        return increment
    window._bytes_processed = processed
    return 0


def _send_end_stream(machine: H2StreamStateMachine) -> None:
    """process_input(SEND_END_STREAM), done here where a whole request was read: a dict lookup
    that hashes an Enum member in Python, for one assignment."""
    if machine.state is HALF_CLOSED_REMOTE:
        machine.state = CLOSED
        machine.stream_closed_by = CLOSED_BY_SEND_END_STREAM  # send_end_stream
    else:
        machine.process_input(StreamInputs.SEND_END_STREAM)


def may_answer(stream: H2Stream) -> bool:
    """Whether we may still send on the stream: h2 closes a stream whose state machine is fed an
    input it does not allow, so a PUSH_PROMISE or 1xx is checked against the state first."""
    return stream.state_machine.state in ANSWERING_STATES


def request_open(stream: H2Stream) -> bool:
    """The client may still send on the stream (its request is not complete)."""
    return stream.state_machine.state == OPEN


def final_headers_sent(stream: H2Stream) -> bool:
    """The response's final header block is out (1xx ones do not count)."""
    return bool(stream.state_machine.headers_sent)


# -- frame headers: those we write, and the checks h2's FrameBuffer leaves out ----------------

FRAME_HEADER_SIZE = 9
#: A frame header: length (24 bits, as 16 + 8), type, flags, stream id (RFC 9113 §4.1).
FRAME_HEADER = struct.Struct("!HBBBL")
#: A WINDOW_UPDATE frame's payload (RFC 9113 §6.9).
WINDOW_INCREMENT = struct.Struct("!L")
END_STREAM_FLAG = 0x1
PADDED_FLAG = 0x8
PRIORITY_FLAG = 0x20
#: The stream id is 31 bits; the reserved bit above it is ignored on receipt (§4.1).
STREAM_ID_MASK = 0x7FFFFFFF
END_HEADERS_FLAG = 0x4
DATA_TYPE = 0x0
SETTINGS_TYPE = 0x4
WINDOW_UPDATE_TYPE = 0x8
ACK_FLAG = 0x1
HEADERS_TYPE = 0x1
PUSH_PROMISE_TYPE = 0x5
CONTINUATION_TYPE = 0x9
HEADER_BLOCK_TYPES = (HEADERS_TYPE, PUSH_PROMISE_TYPE, CONTINUATION_TYPE)
#: The frames the short path may take (ServerH2Connection._short_path_for).
SHORT_PATH_TYPES = (HEADERS_TYPE, DATA_TYPE)


class FrameSizeError(h2.exceptions.ProtocolError):
    error_code = ErrorCodes.FRAME_SIZE_ERROR


class HeaderBlockTooLarge(h2.exceptions.ProtocolError):
    error_code = ErrorCodes.ENHANCE_YOUR_CALM


def _described_briefly(frame: Frame) -> str:
    return f"{type(frame).__name__}(stream_id={frame.stream_id}): {frame.body_len} bytes"


def _received(frame_class: type[Frame]) -> type[Frame]:
    return type(f"Received{frame_class.__name__}", (frame_class,), {"__repr__": _described_briefly})


#: Received frames describe themselves by type, stream and size. h2 formats every received frame
#: for its trace log, whether anything logs it or not: hyperframe's description sorts the flags
#: and renders the body (of a DATA frame, a copy of the payload hex-encoded whole: a third of a
#: worker's CPU on uploads). ServerFrameBuffer gives each frame it reads its class here (all of
#: them, or, when frames are logged, DATA only), ServerH2Connection dispatches on them.
RECEIVED_CLASSES = {
    frame_class: _received(frame_class) for frame_class in [*FRAMES.values(), ExtensionFrame]
}
RECEIVED_DATA_ONLY = {DataFrame: RECEIVED_CLASSES[DataFrame]}


class ServerFrameBuffer(FrameBuffer):
    """h2's frame buffer for the server side, with the checks RFC 9113 asks for up front.

    - §3.4: the first frame after the preface must be SETTINGS.
    - §4.2: a frame longer than our MAX_FRAME_SIZE is refused as soon as its header arrives,
      not after up to 16 MiB of payload has been buffered.
    - §6.5: a SETTINGS ACK with a payload is a FRAME_SIZE_ERROR (hyperframe calls it invalid data).
    - §6.9: the reserved bit of a WINDOW_UPDATE increment is ignored (hyperframe rejects it).
    - §10.5.1: a header block (HEADERS and its CONTINUATIONs) over `max_header_block_size` ends
      the connection before it is buffered further or decoded.
    """

    def __init__(self, max_header_block_size: int, logging_frames: bool = False) -> None:
        super().__init__(server=True)
        self._received_classes = RECEIVED_DATA_ONLY if logging_frames else RECEIVED_CLASSES
        #: The client preface and its SETTINGS frame have arrived.
        self.preface_received = False
        self.max_header_block_size = max_header_block_size
        self.header_block_size = 0

    @property
    def header_block_pending(self) -> bool:
        """A header block has started and its END_HEADERS has not arrived yet."""
        return bool(self._headers_buffer)

    def __next__(self) -> Frame:
        data = self._data
        if len(data) >= FRAME_HEADER_SIZE and not self._preamble_len:
            length = int.from_bytes(data[0:3], "big")
            frame_type = data[3]
            if not self.preface_received:
                if frame_type != SETTINGS_TYPE or data[4] & ACK_FLAG:
                    raise h2.exceptions.ProtocolError("the preface must be followed by SETTINGS")
                self.preface_received = True
            if length > self.max_frame_size:
                raise h2.exceptions.FrameTooLargeError(
                    f"frame of {length} bytes exceeds MAX_FRAME_SIZE {self.max_frame_size}"
                )
            if frame_type == SETTINGS_TYPE and data[4] & ACK_FLAG and length:
                raise FrameSizeError("SETTINGS with ACK must have an empty payload")
            if frame_type == WINDOW_UPDATE_TYPE and length == 4 and len(data) > FRAME_HEADER_SIZE:
                data[FRAME_HEADER_SIZE] &= 0x7F
            if frame_type in HEADER_BLOCK_TYPES and len(data) >= FRAME_HEADER_SIZE + length:
                # Counted once, when the whole frame is here (this header may be peeked again).
                size = length + (self.header_block_size if frame_type == CONTINUATION_TYPE else 0)
                if size > self.max_header_block_size:
                    raise HeaderBlockTooLarge(
                        f"header block over {self.max_header_block_size} bytes"
                    )
                self.header_block_size = size
        frame = super().__next__()
        received_class = self._received_classes.get(frame.__class__)
        if received_class is not None:
            frame.__class__ = received_class
        return frame
