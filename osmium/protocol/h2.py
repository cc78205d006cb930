"""One server-side HTTP/2 connection, sans-IO: bytes in -> events out, calls in -> bytes out.

It wraps h2 and adds what RFC 9113 leaves to a server: stream refusal, graceful GOAWAY, finishing
in-flight streams after a peer GOAWAY, frame sizing and flow-control accounting.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.stream import StreamClosedBy
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    AltSvcFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

from osmium.protocol.events import (
    Body,
    ConnectionFailed,
    EndBody,
    Event,
    GoAway,
    Headers,
    Request,
    Reset,
    WindowOpened,
)
from osmium.protocol.framing import ServerFrameBuffer
from osmium.protocol.limits import KIB, Limits, RateBudget
from osmium.protocol.settings import ProtocolSettings

DEFAULT_WINDOW_SIZE = 65_535
MAX_STREAM_ID = 2**31 - 1
#: Frames that cost us work but carry no request: they spend the control-frame budget.
#: (WINDOW_UPDATE does not: a fast download with a small client window legitimately sends
#: thousands per second.)
CONTROL_EVENTS = frozenset(
    {
        h2.events.PingReceived,
        h2.events.PingAckReceived,
        h2.events.RemoteSettingsChanged,
        h2.events.SettingsAcknowledged,
        h2.events.PriorityUpdated,
        h2.events.ConnectionTerminated,
    }
)
#: A WINDOW_UPDATE opening less than this is a control frame too: a client dribbling its window
#: open a few bytes at a time makes us send a DATA frame per update (CVE-2019-9511).
TINY_WINDOW_INCREMENT = 1024
#: DATA after our RST_STREAM that carries less than this is an ignored frame; larger ones cost
#: the peer what an upload costs (and a client's in-flight upload is made of them).
TINY_LATE_DATA = 1024


class _FrameIgnored(h2.events.Event):
    """A frame h2 read and dropped without an event of its own: it spends the ignored-frame
    budget, and means nothing to the transport."""


#: The one instance our h2 subclass reports (it carries nothing, so it is never allocated again).
FRAME_IGNORED = _FrameIgnored()
#: Frames read and ignored: they spend the ignored-frame budget.
IGNORED_EVENTS = frozenset({_FrameIgnored, h2.events.UnknownFrameReceived})
#: Events that may spend a budget (see `_budget_for`); requests and their ends never do.
BUDGETED_EVENTS = (
    CONTROL_EVENTS
    | IGNORED_EVENTS
    | {
        h2.events.DataReceived,
        h2.events.StreamReset,
        h2.events.WindowUpdated,
    }
)
#: Bytes handed to h2 at a time. Budgets are checked between slices: one large read of tiny
#: frames costs at most a slice (about 1,800 empty frames) past a budget, not the whole read.
RECEIVE_SLICE = 16 * KIB
#: Opaque data of the PING that times the two-step GOAWAY.
GOAWAY_PING = b"osmGOAWY"


class CompressionError(h2.exceptions.ProtocolError):
    error_code = ErrorCodes.COMPRESSION_ERROR


class UpgradeRefused(Exception):
    """An h2c upgrade that cannot be accepted; the request is answered over HTTP/1.1 instead."""


class StreamGone(Exception):
    """The stream was reset or closed before this send; the caller drops what it wanted to send."""


class _FrameLogger:
    """Routes h2's per-frame debug and trace output to the `osmium.frames` logger."""

    def __init__(self) -> None:
        self._logger = logging.getLogger("osmium.frames")

    def debug(self, fmtstr: str, *args: object) -> None:
        self._logger.debug(fmtstr, *args)

    trace = debug


class _ServerH2Connection(h2.connection.H2Connection):
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
    goaway_last_stream_id: int | None = None
    _open_stream_count = 0
    #: RST_STREAM frames queued by `receive_counting_resets`: each answers a frame of the peer.
    provoked_resets = 0

    def receive_counting_resets(self, data: bytes) -> list[h2.events.Event]:
        """`receive_data`, counting the RST_STREAMs it queues into `provoked_resets`.

        The counting method shadows h2's only while receiving, so sends cost nothing extra.
        """
        self._prepare_for_sending = self._count_resets_and_prepare  # type: ignore[method-assign]
        try:
            return self.receive_data(data)
        finally:
            del self._prepare_for_sending

    def _count_resets_and_prepare(self, frames: list) -> None:
        for frame in frames:
            if frame.type == RstStreamFrame.type:
                self.provoked_resets += 1
        h2.connection.H2Connection._prepare_for_sending(self, frames)

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
        except h2.exceptions.ProtocolError as error:
            cause = error.__cause__
            # h2 reports every HPACK decoding failure as PROTOCOL_ERROR; RFC 9113 §4.3 says
            # COMPRESSION_ERROR (an oversized header list stays h2's ENHANCE_YOUR_CALM).
            if isinstance(cause, HPACKError) and not isinstance(cause, OversizedHeaderListError):
                raise CompressionError(str(error)) from error
            if is_new_stream and stream_id in self.streams:
                # The block decoded (HPACK state is in sync) and opened a stream, but the request
                # is malformed: §8.1.1 makes that an error of this stream only.
                return self._refuse(stream_id, ErrorCodes.PROTOCOL_ERROR, [], [])
            raise
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

    def _refuse(self, stream_id: int, error_code: int, frames: list, events: list) -> tuple:
        """Reset a stream the peer just opened; the app never hears of it."""
        self._prepare_for_sending(frames)
        self.reset_stream(stream_id, error_code)
        return [], [event for event in events if getattr(event, "stream_id", None) != stream_id]

    def _receive_data_frame(self, frame: DataFrame) -> tuple[list, list]:
        # §5.1: DATA arriving after *we* reset the stream is ignored (its window still returned);
        # h2 would answer every such frame with one more RST_STREAM. A small one is counted.
        reset_by_us = self._stream_closed_by(frame.stream_id) is StreamClosedBy.SEND_RST_STREAM
        try:
            frames, events = super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError:
            # §8.1.1: more or less DATA than content-length is malformed: a stream error.
            self.reset_stream(frame.stream_id, ErrorCodes.PROTOCOL_ERROR)
            self.acknowledge_received_data(frame.flow_controlled_length, frame.stream_id)
            reset = h2.events.StreamReset(
                stream_id=frame.stream_id, error_code=ErrorCodes.PROTOCOL_ERROR, remote_reset=False
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


class ServerConnection:
    """The protocol state of one HTTP/2 connection, fed by a transport that owns the socket."""

    def __init__(
        self,
        settings: ProtocolSettings,
        *,
        limits: Limits | None = None,
        debug_frames: bool = False,
    ) -> None:
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=True,
            normalize_inbound_headers=True,
            logger=_FrameLogger() if debug_frames else None,
        )
        self._h2 = _ServerH2Connection(config=config)
        self._h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: settings.max_frame_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        # h2 copied its default limits out of the settings we just replaced; apply ours.
        self._h2.max_inbound_frame_size = settings.max_frame_size
        self._h2.decoder.max_header_list_size = settings.max_header_list_size
        limits = limits or Limits()
        self._frames = ServerFrameBuffer(limits.max_header_block_size)
        self._h2.incoming_buffer = self._frames
        self._settings = settings
        self._resets = RateBudget("stream reset", limits.max_resets_per_second)
        self._control_frames = RateBudget("control frame", limits.max_control_frames_per_second)
        self._ignored_frames = RateBudget("ignored frame", limits.max_ignored_frames_per_second)
        self._trailers: dict[int, Headers] = {}
        self.closing = False
        self.closed = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, upgrade_settings: bytes | None = None) -> None:
        """Queue the server preface: SETTINGS, then the connection window beyond the default.

        `upgrade_settings` is the HTTP2-Settings value of an `Upgrade: h2c` request (RFC 7540
        §3.2); stream 1 then stands for that request. Raises UpgradeRefused when it is invalid.
        """
        if upgrade_settings is None:
            self._h2.initiate_connection()
        else:
            padded = upgrade_settings + b"=" * (-len(upgrade_settings) % 4)
            try:
                self._h2.initiate_upgrade_connection(padded)
            except (ValueError, HyperframeError, h2.exceptions.ProtocolError) as error:
                raise UpgradeRefused(f"invalid HTTP2-Settings: {error}") from None
        extra_window = self._settings.connection_window_size - DEFAULT_WINDOW_SIZE
        if extra_window > 0:
            self._h2.increment_flow_control_window(extra_window)

    def start_graceful_close(self) -> None:
        """RFC 9113 §6.8's two-step GOAWAY, first step: no new streams, please.

        GOAWAY(2^31-1) and a PING go out now; streams the client opened before it saw them are
        still served. The final GOAWAY, naming the last stream served, follows the PING's ACK
        (one round trip) or `finish_graceful_close()`, whichever comes first.
        """
        if not self.closing and not self.closed:
            self.closing = True
            self._h2.send_graceful_goaway(MAX_STREAM_ID)
            self._h2.ping(GOAWAY_PING)

    def finish_graceful_close(self) -> None:
        """Final GOAWAY: streams above the last one opened so far are refused from now on."""
        if self.closing and self._h2.goaway_last_stream_id is None and not self.closed:
            self._h2.goaway_last_stream_id = self._h2.highest_inbound_stream_id
            self._h2.send_graceful_goaway(self._h2.highest_inbound_stream_id)

    @property
    def preface_received(self) -> bool:
        """The client's preface and first SETTINGS have arrived: the handshake is done."""
        return self._frames.preface_received

    @property
    def header_block_pending(self) -> bool:
        """A request's header block has started but not ended (CONTINUATIONs still due)."""
        return self._frames.header_block_pending

    @property
    def goaway_complete(self) -> bool:
        """The final GOAWAY went out (or the connection is closed): no new stream can come."""
        return self.closed or self._h2.goaway_last_stream_id is not None

    def close(self, error_code: int = ErrorCodes.NO_ERROR) -> None:
        """Final GOAWAY; nothing more is sent on this connection."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection(error_code)

    # -- input -----------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float = 0.0) -> list[Event]:
        """Feed bytes from the socket (read at `now`, seconds); returns what they mean, in order."""
        if self.closed:
            return []
        if len(data) > RECEIVE_SLICE:
            return self._receive_in_slices(data, now)
        resets_before = self._h2.provoked_resets
        try:
            h2_events = self._h2.receive_counting_resets(data)
        except h2.exceptions.ProtocolError as error:
            code = getattr(error, "error_code", ErrorCodes.PROTOCOL_ERROR)
            if self._h2.state_machine.state is not ConnectionState.CLOSED:
                # A bad preface fails before h2 queues its GOAWAY (RFC 9113 §3.4 still wants one).
                self._h2.close_connection(code)
            self.closed = True
            return [ConnectionFailed(int(code), str(error) or type(error).__name__)]
        provoked = self._h2.provoked_resets - resets_before
        if provoked and not self._resets.spend(now, provoked):
            return [self._calm_down(f"over the {self._resets.name} budget")]
        return self._translate(h2_events, now)

    def _receive_in_slices(self, data: bytes, now: float) -> list[Event]:
        """`receive`, a slice at a time, so that a flood is cut off within a slice of its budget."""
        events: list[Event] = []
        for start in range(0, len(data), RECEIVE_SLICE):
            events += self.receive(data[start : start + RECEIVE_SLICE], now)
            if self.closed:
                break
        return events

    def _translate(self, h2_events: Sequence[h2.events.Event], now: float) -> list[Event]:
        events: list[Event] = []
        for event in h2_events:
            kind = type(event)
            if kind in BUDGETED_EVENTS:
                budget = self._budget_for(event, kind)
                if budget is not None and not budget.spend(now):
                    return [*events, self._calm_down(f"over the {budget.name} budget")]
            if kind is h2.events.DataReceived:
                events.append(Body(event.stream_id, event.data, event.flow_controlled_length))
            elif kind is h2.events.RequestReceived:
                events.append(Request(event.stream_id, event.headers))
            elif kind is h2.events.StreamEnded:
                events.append(EndBody(event.stream_id, self._trailers.pop(event.stream_id, [])))
            elif kind is h2.events.WindowUpdated:
                events.append(WindowOpened(event.stream_id))
            elif kind is h2.events.StreamReset:
                self._trailers.pop(event.stream_id, None)
                events.append(Reset(event.stream_id, int(event.error_code)))
            elif kind is h2.events.TrailersReceived:
                self._trailers[event.stream_id] = event.headers
            elif kind is h2.events.RemoteSettingsChanged:
                if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    events.append(WindowOpened(0))
            elif kind is h2.events.PingAckReceived:
                if event.ping_data == GOAWAY_PING:
                    self.finish_graceful_close()
            elif kind is h2.events.ConnectionTerminated:
                events.append(GoAway(int(event.error_code), event.last_stream_id))
        return events

    def _budget_for(self, event: h2.events.Event, kind: type) -> RateBudget | None:
        """The flood budget a frame spends, if any: requests and their bodies spend none."""
        if kind in CONTROL_EVENTS:
            return self._control_frames
        if kind is h2.events.DataReceived and not event.data and event.stream_ended is None:
            return self._control_frames  # an empty DATA frame that does not even end the stream
        if kind is h2.events.StreamReset and event.remote_reset:
            return self._resets
        if kind is h2.events.WindowUpdated and event.delta < TINY_WINDOW_INCREMENT:
            return self._control_frames
        if kind in IGNORED_EVENTS:
            return self._ignored_frames
        return None

    def _calm_down(self, reason: str) -> ConnectionFailed:
        """Over a flood budget: GOAWAY(ENHANCE_YOUR_CALM), and nothing more from this peer."""
        self.close(ErrorCodes.ENHANCE_YOUR_CALM)
        return ConnectionFailed(ErrorCodes.ENHANCE_YOUR_CALM, reason)

    # -- output ----------------------------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        if self.closed:
            raise StreamGone(stream_id)
        try:
            self._h2.send_headers(stream_id, headers, end_stream=end_stream)
        except (h2.exceptions.NoSuchStreamError, h2.exceptions.StreamIDTooLowError) as error:
            # StreamIDTooLowError: the stream was reset and h2 has forgotten it since.
            raise StreamGone(stream_id) from error

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> int:
        """Queue as much of `data` as the send windows allow, in frames the peer accepts.

        Returns how many bytes were queued; END_STREAM goes out only with the last byte.
        """
        if self.closed:
            raise StreamGone(stream_id)
        try:
            return self._send_data_within_window(stream_id, data, end_stream)
        except h2.exceptions.NoSuchStreamError as error:
            raise StreamGone(stream_id) from error

    def _send_data_within_window(self, stream_id: int, data: bytes, end_stream: bool) -> int:
        h2_connection = self._h2
        window = h2_connection.local_flow_control_window(stream_id)
        frame_size = h2_connection.max_outbound_frame_size
        total = len(data)
        if total <= window and total <= frame_size:
            h2_connection.send_data(stream_id, data, end_stream=end_stream)
            return total
        view = memoryview(data)
        sent = 0
        while sent < total and window > 0:
            size = min(frame_size, window, total - sent)
            last = sent + size == total
            h2_connection.send_data(
                stream_id, view[sent : sent + size], end_stream=end_stream and last
            )
            sent += size
            window -= size
        return sent

    def end_stream(self, stream_id: int) -> None:
        if self.closed:
            raise StreamGone(stream_id)
        try:
            self._h2.end_stream(stream_id)
        except h2.exceptions.NoSuchStreamError as error:
            raise StreamGone(stream_id) from error

    def reset(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM, unless the stream is already closed (then there is nothing to reset)."""
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.NoSuchStreamError):
            self._h2.reset_stream(stream_id, error_code)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The app consumed `size` flow-controlled bytes: let the client send that much more."""
        if size and not self.closed:
            self._h2.acknowledge_received_data(size, stream_id)

    def data_to_send(self) -> bytes:
        return self._h2.data_to_send()

    @property
    def pending_output_size(self) -> int:
        return len(self._h2._data_to_send)
