"""One server-side HTTP/2 connection, sans-IO: bytes in -> events out, calls in -> bytes out.

It wraps h2 and adds what RFC 9113 leaves to a server: stream refusal, graceful GOAWAY, finishing
in-flight streams after a peer GOAWAY, frame sizing and flow-control accounting.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from hpack.hpack import INDEX_NONE, Encoder
from hpack.table import HeaderTable
from hyperframe.exceptions import HyperframeError

from osmium.protocol.events import (
    Body,
    ConnectionFailed,
    EndBody,
    Event,
    GoAway,
    Headers,
    IdleTimedOut,
    OutputStalled,
    PingAcknowledged,
    PingTimedOut,
    Request,
    Reset,
    SendTimedOut,
    TimedOut,
)
from osmium.protocol.h2_internals import (
    DEFAULT_WINDOW_SIZE,
    FrameIgnored,
    LeanSettings,
    ServerFrameBuffer,
    ServerH2Connection,
    final_headers_sent,
    may_answer,
    request_open,
    server_config,
)
from osmium.protocol.hpack_repeats import RepeatingBlockEncoder
from osmium.protocol.limits import KIB, Limits, RateBudget
from osmium.protocol.output import StreamOutput
from osmium.protocol.priority import (
    DEFAULT_PRIORITY,
    PRIORITY_UPDATE_TYPE,
    Priority,
    PriorityUpdate,
    PriorityUpdateError,
    merge_response_priority,
    parse_priority,
    parse_priority_update,
)
from osmium.protocol.scheduler import Scheduler
from osmium.protocol.settings import MAX_WINDOW_SIZE, ProtocolSettings

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


#: Frames read and ignored: they spend the ignored-frame budget.
IGNORED_EVENTS = frozenset({FrameIgnored, h2.events.UnknownFrameReceived})
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
#: Body bytes one stream may have queued before its sender waits (see `has_room`).
STREAM_QUEUE_LIMIT = 64 * KIB
#: RFC 9218 §2.1: we take the client's priority signals, not RFC 7540's dependency tree.
SETTINGS_NO_RFC7540_PRIORITIES = 0x9
#: Opaque data of the PING that times the two-step GOAWAY.
GOAWAY_PING = b"osmGOAWY"
#: Opaque data of the PINGs that check the peer is alive (after idle_ping, or an operator's).
LIVENESS_PING = b"osmALIVE"
#: Seconds a graceful close waits for the client's PING ACK before sending the final GOAWAY.
FINAL_GOAWAY_DELAY = 1.0
#: A retiring worker's connection closes after this many seconds without a stream.
RETIRE_IDLE_TIMEOUT = 0.5


#: Codes literals only: what it writes does not depend on any connection's dynamic table.
_LITERAL_CODER = Encoder()


@functools.lru_cache(maxsize=64)
def unindexed_literal(name: bytes, value: bytes) -> bytes:
    """A field coded as a literal without indexing (RFC 7541 §6.2.2), its name indexed when the
    static table has it: the same bytes on every connection, so coded once for all of them (the
    server's fields, and `date` once a second, not once a second on each connection)."""
    static = HeaderTable.STATIC_TABLE_MAPPING.get(name)
    if static is None:
        return _LITERAL_CODER._encode_literal(name, value, INDEX_NONE, huffman=True)
    return _LITERAL_CODER._encode_indexed_literal(static[0], value, INDEX_NONE, huffman=True)


class ConstantFieldsEncoder(RepeatingBlockEncoder):
    """hpack's encoder, with the fields the server adds to every response (`server`, --header)
    encoded once, as literals without indexing (RFC 7541 §6.2.2).

    Passed to h2 and encoded as usual, each would cost h2's copy of the field and a search of
    the dynamic table (a linear scan, longer as `date` values pile up in it): about 20,000
    instructions a response for `server` alone. A response ends with them (ResponseFields adds
    them last): `encode` takes them off and appends their bytes. A response that named one of
    them itself is encoded as usual.
    """

    def __init__(self, fields: Headers) -> None:
        super().__init__()
        self._fields = fields
        self._count = len(fields)
        self._block = b"".join([unindexed_literal(name, value) for name, value in fields])
        #: The `date` value the server adds before them, and its encoding: a new value each
        #: second, which indexed would fill the dynamic table and lengthen every search of it.
        self._date = b""
        self._date_block = b""

    def encode(self, headers: Headers, huffman: bool = True) -> bytes:  # type: ignore[override]
        """The constant fields at the end of `headers` (and the `date` before them) from their
        precomputed bytes: the same fields, values and order; only the representation
        differs."""
        count = self._count
        # The very objects, usually: compared by identity.
        if type(headers) is not list or len(headers) <= count or headers[-count:] != self._fields:
            return super().encode(headers, huffman)
        name, date = headers[-count - 1]
        if name != b"date":
            return super().encode(headers[:-count], huffman) + self._block
        if date is not self._date:
            self._date, self._date_block = date, unindexed_literal(b"date", date)
        return super().encode(headers[: -count - 1], huffman) + self._date_block + self._block


class UpgradeRefused(Exception):
    """An h2c upgrade that cannot be accepted; the request is answered over HTTP/1.1 instead."""


class StreamGone(Exception):
    """The stream was reset or closed before this send; the caller drops what it wanted to send."""


class ServerConnection:
    """The protocol state of one HTTP/2 connection, fed by a transport that owns the socket."""

    def __init__(
        self,
        settings: ProtocolSettings,
        *,
        limits: Limits | None = None,
        debug_frames: bool = False,
        keep_alive_timeout: float | None = None,
        constant_fields: Headers | None = None,
    ) -> None:
        """`constant_fields`: what ends every response's fields (ResponseFields.defaults)."""
        limits = limits or Limits()
        self._frames = ServerFrameBuffer(limits.max_header_block_size, debug_frames)
        local_settings = LeanSettings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: settings.max_frame_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
                # The client may not push to us; whether we may push is its SETTINGS' say.
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                SETTINGS_NO_RFC7540_PRIORITIES: 1,
                # RFC 8441: WebSockets over streams (extended CONNECT).
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
            },
        )
        self._h2 = ServerH2Connection(
            server_config(debug_frames),
            local_settings,
            ConstantFieldsEncoder(constant_fields) if constant_fields else RepeatingBlockEncoder(),
            self._frames,
            settings.max_header_list_size,
        )
        self._settings = settings
        self._resets = RateBudget("stream reset", limits.max_resets_per_second)
        self._control_frames = RateBudget("control frame", limits.max_control_frames_per_second)
        self._ignored_frames = RateBudget("ignored frame", limits.max_ignored_frames_per_second)
        self._trailers: dict[int, Headers] = {}
        #: Response bodies waiting to be framed, by stream, and which stream goes next.
        self._outputs: dict[int, StreamOutput] = {}
        self._scheduler = Scheduler()
        #: Client priorities other than the default, by stream (header or PRIORITY_UPDATE).
        self._priorities: dict[int, Priority] = {}
        #: PRIORITY_UPDATEs for streams not open yet (RFC 9218 §7.1), oldest first, bounded.
        self._early_priorities: dict[int, PriorityUpdate] = {}
        #: The newest stream reported as a Request (ids only grow, RFC 9113 §5.1.1).
        self._last_request_id = 0
        #: Body bytes queued on all streams (at most about limits.max_connection_output).
        self.queued_size = 0
        self._limits = limits
        #: When the preface, an open header block and the final GOAWAY are due (None: not due).
        self._handshake_deadline: float | None = None
        self._header_deadline: float | None = None
        self._goaway_deadline: float | None = None
        #: The earliest moment a queued response has gone send_timeout without progress (None
        #: while no body is queued: then `data_to_send` needs no time).
        self.send_deadline: float | None = None
        #: Since when no stream runs (None: one does), and when that closes the connection.
        self._keep_alive_timeout = keep_alive_timeout
        self._retiring = False
        self._idle_since: float | None = None
        self._idle_deadline: float | None = None
        #: When a socket that stopped taking our output has had send_timeout to drain.
        self._stall_deadline: float | None = None
        #: When the peer's last bytes arrived: idle_ping of silence after them earns it a PING.
        self.last_received_at = 0.0
        #: When our PING still waiting for its ACK went out (None: none is), and the round trip
        #: of the last one answered (seconds).
        self._ping_sent_at: float | None = None
        self.ping_rtt: float | None = None
        #: The earliest deadline set since the transport last took this (it sets None): its
        #: timer must go off by then. A deadline that goes away needs no word: a timer that
        #: fires early finds nothing due, and the transport asks `next_deadline` again.
        self.new_deadline: float | None = None
        self.closing = False
        self.closed = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, upgrade_settings: bytes | None = None, now: float = 0.0) -> None:
        """Queue the server preface: SETTINGS, then the connection window beyond the default.
        The client's preface is due within handshake_timeout of `now`.

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
            self._last_request_id = 1  # the upgraded request
        extra_window = self._settings.connection_window_size - DEFAULT_WINDOW_SIZE
        if extra_window > 0:
            self._h2.increment_flow_control_window(extra_window)
        self._handshake_deadline = now + self._limits.handshake_timeout
        self._announce(self._handshake_deadline)
        self.last_received_at = now

    def start_graceful_close(self, now: float = 0.0) -> None:
        """RFC 9113 §6.8's two-step GOAWAY, first step: no new streams, please.

        GOAWAY(2^31-1) and a PING go out now; streams the client opened before it saw them are
        still served. The final GOAWAY, naming the last stream served, follows the PING's ACK
        (one round trip), `finish_graceful_close()`, or FINAL_GOAWAY_DELAY after `now`, whichever
        comes first.
        """
        if not self.closing and not self.closed:
            self.closing = True
            self._idle_deadline = None
            self._h2.send_graceful_goaway(MAX_STREAM_ID)
            self._h2.ping(GOAWAY_PING)
            self._goaway_deadline = now + FINAL_GOAWAY_DELAY
            self._announce(self._goaway_deadline)

    def finish_graceful_close(self) -> None:
        """Final GOAWAY: streams above the last one opened so far are refused from now on."""
        self._goaway_deadline = None
        if self.closing and self._h2.goaway_last_stream_id is None and not self.closed:
            self._h2.goaway_last_stream_id = self._h2.highest_inbound_stream_id
            self._h2.send_graceful_goaway(self._h2.highest_inbound_stream_id)

    # -- deadlines -------------------------------------------------------------------------------

    def idle(self, now: float) -> None:
        """No stream runs from `now` (the last one's handler finished): after keep_alive_timeout
        of that, `handle_timeout` says IdleTimedOut. A request that arrives ends the wait."""
        self._idle_since = now
        timeout = self._keep_alive_timeout
        if timeout is None or self.closing:
            return
        if self._retiring:
            timeout = min(timeout, RETIRE_IDLE_TIMEOUT)
        deadline = self._idle_deadline = now + timeout
        new = self.new_deadline
        if new is None or deadline < new:
            self.new_deadline = deadline

    def output_paused(self, now: float) -> None:
        """The transport's socket takes no more output from `now`: nothing is framed past the
        room it reports, and after send_timeout of this `handle_timeout` says OutputStalled."""
        self._stall_deadline = now + self._limits.send_timeout
        self._announce(self._stall_deadline)

    def output_resumed(self) -> None:
        self._stall_deadline = None

    def busy(self) -> None:
        """A stream runs that did not arrive as a request here (the h2c upgrade's stream 1)."""
        self._idle_since = self._idle_deadline = None

    def retire(self) -> None:
        """The worker is retiring: idle for RETIRE_IDLE_TIMEOUT is enough to close."""
        self._retiring = True
        if self._idle_since is not None:
            self.idle(self._idle_since)

    def _announce(self, deadline: float) -> None:
        if self.new_deadline is None or deadline < self.new_deadline:
            self.new_deadline = deadline

    def next_deadline(self) -> float | None:
        """When `handle_timeout` next has something to do (None: nothing is due)."""
        deadlines = (
            self._handshake_deadline,
            self._header_deadline,
            self._goaway_deadline,
            self.send_deadline,
            self._idle_deadline,
            self._stall_deadline,
            self._ping_deadline(),
        )
        due = [deadline for deadline in deadlines if deadline is not None]
        return min(due) if due else None

    def _ping_deadline(self) -> float | None:
        """When our PING's ACK is due; with none out, when the peer's silence earns a PING
        (computed, not stored: the bytes that move it later cost one attribute store each)."""
        if self._ping_sent_at is not None:
            return self._ping_sent_at + self._limits.ping_timeout
        if self._idle_ping_due():
            return self.last_received_at + self._limits.idle_ping
        return None

    def _idle_ping_due(self) -> bool:
        """Idle PINGs are on, the handshake is done and the connection is not going away."""
        going = self.closing or self.closed
        return bool(self._limits.idle_ping) and self.preface_received and not going

    def handle_timeout(self, now: float) -> list[Event]:
        """What the deadlines due at `now` mean: a slow handshake or header block ends the
        connection (TimedOut, GOAWAY(ENHANCE_YOUR_CALM) queued); a response that made no progress
        for send_timeout is reset (SendTimedOut, RST_STREAM(CANCEL)); a socket that took nothing
        for send_timeout is given up (OutputStalled); a graceful close sends its final GOAWAY; a
        connection idle for the keep-alive is closed (IdleTimedOut); a peer silent for idle_ping
        gets a PING, and one that leaves it unanswered for ping_timeout is dead (PingTimedOut)."""
        if self.closed:
            return []
        limits = self._limits
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            self._handshake_deadline = None
            return [self._time_out("HTTP/2 preface", limits.handshake_timeout)]
        if self._header_deadline is not None and now >= self._header_deadline:
            self._header_deadline = None
            return [self._time_out("request header block", limits.header_timeout)]
        if self._goaway_deadline is not None and now >= self._goaway_deadline:
            self.finish_graceful_close()
        if self.send_deadline is not None and now >= self.send_deadline:
            return self._reset_stalled_sends(now)
        if self._stall_deadline is not None and now >= self._stall_deadline:
            self._stall_deadline = None
            return [OutputStalled(limits.send_timeout)]
        if self._idle_deadline is not None and now >= self._idle_deadline:
            self._idle_deadline = None
            return [IdleTimedOut()]
        if self._ping_sent_at is not None:
            if now >= self._ping_sent_at + limits.ping_timeout:
                self._ping_sent_at = None
                self.close(ErrorCodes.NO_ERROR)
                return [PingTimedOut(limits.ping_timeout)]
        elif self._idle_ping_due() and now >= self.last_received_at + limits.idle_ping:
            self._send_ping(now)
        return []

    def ping(self, now: float) -> bool:
        """An operator's PING, sent at `now`: its ACK sets `ping_rtt` (PingAcknowledged), and
        none within ping_timeout ends the connection like an idle PING's (PingTimedOut). False,
        and nothing sent, while a PING of ours is unanswered or once the connection is closed."""
        if self._ping_sent_at is not None or self.closed:
            return False
        self._send_ping(now)
        return True

    def _send_ping(self, now: float) -> None:
        self._h2.ping(LIVENESS_PING)
        self._ping_sent_at = now
        self._announce(now + self._limits.ping_timeout)

    def _reset_stalled_sends(self, now: float) -> list[Event]:
        timeout = self._limits.send_timeout
        stalled = [
            stream_id
            for stream_id, output in self._outputs.items()
            if output.size
            and output.progress_at is not None
            and output.progress_at + timeout <= now
        ]
        for stream_id in stalled:
            self.reset(stream_id, ErrorCodes.CANCEL)
        self._watch_sends(now)
        return [SendTimedOut(stream_id, timeout) for stream_id in stalled]

    def _watch_sends(self, now: float) -> None:
        """After framing: each response still queued runs to send_timeout from its last
        progress (from now, for one seen queued for the first time)."""
        earliest = None
        for output in self._outputs.values():
            if output.size:
                if output.progress_at is None:
                    output.progress_at = now
                if earliest is None or output.progress_at < earliest:
                    earliest = output.progress_at
        deadline = None if earliest is None else earliest + self._limits.send_timeout
        if deadline != self.send_deadline:
            self.send_deadline = deadline
            if deadline is not None:
                self._announce(deadline)

    def _time_out(self, what: str, seconds: float) -> TimedOut:
        self.close(ErrorCodes.ENHANCE_YOUR_CALM)
        return TimedOut(what, seconds)

    def _watch_handshake_and_headers(self, now: float) -> None:
        """After a read: the preface deadline ends once it is in; a header block still open must
        end within header_timeout of the read that left it open."""
        frames = self._frames
        if self._handshake_deadline is not None and frames.preface_received:
            self._handshake_deadline = None
            if self._idle_ping_due():
                self._announce(now + self._limits.idle_ping)
        if frames.header_block_pending:
            if self._header_deadline is None:
                self._header_deadline = now + self._limits.header_timeout
                self._announce(self._header_deadline)
        else:
            self._header_deadline = None

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
        """Feed bytes from the socket (read at `now`, seconds); returns what they mean, in order.

        Requests and their bodies take a short path; other frames go to h2 a slice at a time, so
        that a flood is cut off within a slice of its budget."""
        if self.closed:
            return []
        self.last_received_at = now
        events: list[Event] = []
        rest: bytes | memoryview = data
        while rest:
            resets_before = self._h2.provoked_resets
            try:
                taken, h2_events, rest = self._h2.receive_counting_resets(rest, RECEIVE_SLICE)
            except h2.exceptions.ProtocolError as error:
                return [*events, self._fail(error)]
            provoked = self._h2.provoked_resets - resets_before
            if provoked and not self._resets.spend(now, provoked):
                return [*events, self._calm_down(f"over the {self._resets.name} budget")]
            if taken:
                # The short path ran: the handshake was over, and it leaves no block open.
                events += self._taken(taken)
            else:
                self._watch_handshake_and_headers(now)
                events += self._translate(h2_events, now)
            if self.closed:
                break
        return events

    def _fail(self, error: h2.exceptions.ProtocolError) -> ConnectionFailed:
        code = getattr(error, "error_code", ErrorCodes.PROTOCOL_ERROR)
        if self._h2.state_machine.state is not ConnectionState.CLOSED:
            # A bad preface fails before h2 queues its GOAWAY (RFC 9113 §3.4 still wants one).
            self._h2.close_connection(code)
        self.closed = True
        return ConnectionFailed(int(code), str(error) or type(error).__name__)

    def _taken(self, events: list[Event]) -> list[Event]:
        """The short path's events, as `_translate` would have made them from h2's: what a new
        request or a reset changes here is done."""
        for event in events:
            kind = type(event)
            if kind is Request:
                self._opened(event)  # type: ignore[arg-type]
            elif kind is Reset:  # a body over its content-length (no trailers came)
                self._drop_output(event.stream_id)
        return events

    def _opened(self, request: Request) -> None:
        """A request opened its stream: the connection is busy, and the stream takes the
        priority its `priority` field asks for (or an earlier PRIORITY_UPDATE)."""
        self._last_request_id = request.stream_id
        if self._idle_since is not None:
            self._idle_since = self._idle_deadline = None
        # Whether the field is there, kept with the short path's memo of an equal header list.
        known = request.known
        priority = known.get("priority") if known else None
        if priority is None:
            priority = False
            for name, _ in request.headers:
                if name == b"priority":
                    priority = True
                    break
            if known is not None:
                known["priority"] = priority
        if priority or self._early_priorities:
            self._take_priority(request.stream_id, request.headers)

    def _translate(self, h2_events: Sequence[h2.events.Event], now: float) -> list[Event]:
        events: list[Event] = []
        ended_with_request = None  # told by the request's `complete`
        for event in h2_events:
            kind = type(event)
            if kind is h2.events.DataReceived and event.data:  # body bytes spend no budget
                events.append(Body(event.stream_id, event.data, event.flow_controlled_length))
                continue
            if kind in BUDGETED_EVENTS:
                budget = self._budget_for(event, kind)
                if budget is not None and not budget.spend(now):
                    return [*events, self._calm_down(f"over the {budget.name} budget")]
            if kind is h2.events.DataReceived:
                events.append(Body(event.stream_id, event.data, event.flow_controlled_length))
            elif kind is h2.events.RequestReceived:
                ended_with_request = event.stream_ended
                request = Request(event.stream_id, event.headers, ended_with_request is not None)
                self._opened(request)
                events.append(request)
            elif kind is h2.events.StreamEnded:
                if event is not ended_with_request:
                    trailers = self._trailers.pop(event.stream_id, [])
                    events.append(EndBody(event.stream_id, trailers))
            elif kind is h2.events.WindowUpdated:
                if event.stream_id:
                    self._reschedule(event.stream_id)
            elif kind is h2.events.StreamReset:
                self._trailers.pop(event.stream_id, None)
                self._drop_output(event.stream_id)
                events.append(Reset(event.stream_id, int(event.error_code)))
            elif kind is h2.events.TrailersReceived:
                self._trailers[event.stream_id] = event.headers
            elif kind is h2.events.RemoteSettingsChanged:
                if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    self._reschedule_all()
            elif kind is h2.events.UnknownFrameReceived:
                if event.frame.type == PRIORITY_UPDATE_TYPE:
                    failure = self._on_priority_update(event.frame)
                    if failure is not None:
                        return [*events, failure]
            elif kind is h2.events.PingAckReceived:
                if event.ping_data == GOAWAY_PING:
                    self.finish_graceful_close()
                elif event.ping_data == LIVENESS_PING and self._ping_sent_at is not None:
                    rtt = self.ping_rtt = now - self._ping_sent_at
                    self._ping_sent_at = None
                    events.append(PingAcknowledged(rtt))
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
            if kind is h2.events.UnknownFrameReceived and event.frame.type == PRIORITY_UPDATE_TYPE:
                return self._control_frames  # a signal we act on, like PRIORITY
            return self._ignored_frames
        return None

    # -- priority signals (RFC 9218) -------------------------------------------------------------

    def _take_priority(self, stream_id: int, headers: Headers) -> None:
        """The request's `priority` header (its field lines joined, RFC 9651 §4.2), overridden by
        a PRIORITY_UPDATE that came before the stream opened (RFC 9218 §7)."""
        lines = [value for name, value in headers if name == b"priority"]
        priority = parse_priority(b", ".join(lines)) if lines else DEFAULT_PRIORITY
        if self._early_priorities:
            update = self._early_priorities.pop(stream_id, None)
            if update is not None:
                priority = update.priority(priority)
        if priority is not DEFAULT_PRIORITY:
            self._priorities[stream_id] = priority

    def _take_response_priority(self, stream_id: int, value: bytes) -> None:
        """RFC 9218 §8: the application's `priority` response field overrides the parameters it
        names; the client's signal keeps the others (a later PRIORITY_UPDATE overrides both)."""
        priority = merge_response_priority(self.priority_of(stream_id), value)
        if priority != DEFAULT_PRIORITY:
            self._priorities[stream_id] = priority
        elif self._priorities:
            self._priorities.pop(stream_id, None)

    def _on_priority_update(self, frame: object) -> ConnectionFailed | None:
        """RFC 9218 §7.1: re-prioritise a stream (a request's or one we promised), or remember
        it for a request stream not open yet."""
        try:
            update = parse_priority_update(frame.stream_id, frame.body)  # type: ignore[attr-defined]
        except PriorityUpdateError as error:
            self.close(error.error_code)
            return ConnectionFailed(error.error_code, str(error))
        stream_id = update.prioritized_stream_id
        if not stream_id % 2:
            if stream_id > self._h2.highest_outbound_stream_id:
                # A push stream we never promised is idle: §7.1 makes that a connection error.
                self.close(ErrorCodes.PROTOCOL_ERROR)
                reason = "PRIORITY_UPDATE for an idle push stream"
                return ConnectionFailed(int(ErrorCodes.PROTOCOL_ERROR), reason)
        elif stream_id > self._last_request_id:
            # Not by h2's stream table: a request read in the same batch is there already,
            # though its Request (and its own priority field, which the update overrides) comes
            # after.
            if len(self._early_priorities) >= self._settings.max_concurrent_streams:
                # Bounded like the streams it may name: the oldest is forgotten first.
                del self._early_priorities[next(iter(self._early_priorities))]
            self._early_priorities[stream_id] = update
            return None
        priority = update.priority(self.priority_of(stream_id))
        stream = self._h2.streams.get(stream_id)
        if stream is None or stream.closed:
            return None  # over already: nothing to re-prioritise
        self._priorities[stream_id] = priority
        output = self._outputs.get(stream_id)
        if output is not None:
            output.priority = priority
            self._scheduler.reprioritise(stream_id, priority)
        return None

    def _calm_down(self, reason: str) -> ConnectionFailed:
        """Over a flood budget: GOAWAY(ENHANCE_YOUR_CALM), and nothing more from this peer."""
        self.close(ErrorCodes.ENHANCE_YOUR_CALM)
        return ConnectionFailed(ErrorCodes.ENHANCE_YOUR_CALM, reason)

    # -- output ----------------------------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        """Response headers go out at once; trailers wait behind the stream's queued body."""
        if self.closed:
            raise StreamGone(stream_id)
        output = self._outputs.get(stream_id)
        if output is not None and output.size:
            output.trailers = headers
            return
        if output is None:
            for name, value in headers:
                if name == b"priority":
                    self._take_response_priority(stream_id, value)
                    break
        try:
            self._h2.send_headers(stream_id, headers, end_stream)
        except (h2.exceptions.NoSuchStreamError, h2.exceptions.StreamIDTooLowError) as error:
            # StreamIDTooLowError: the stream was reset and h2 has forgotten it since.
            raise StreamGone(stream_id) from error
        if end_stream:
            self._forget_stream(stream_id)

    def send_informational(self, stream_id: int, headers: Headers) -> None:
        """A 1xx response (`headers` with its `:status`) ahead of the final one, such as 103
        Early Hints (RFC 8297): HEADERS without END_STREAM, sent at once.

        Ignored on a stream whose final response has started, and on a pushed stream: no
        request of the client's waits on it (and h2 allows 1xx only on a client's stream).
        """
        if self.closed:
            raise StreamGone(stream_id)
        stream = self._h2.streams.get(stream_id)
        if stream is None or stream.closed:
            raise StreamGone(stream_id)
        if stream_id % 2 and may_answer(stream) and not final_headers_sent(stream):
            self._h2.send_headers(stream_id, headers, end_stream=False)

    def push(self, stream_id: int, request_headers: Headers) -> int | None:
        """RFC 9113 §8.4: PUSH_PROMISE on stream `stream_id` for `request_headers` (a complete
        request: :method, :scheme, :authority, :path, fields); returns the promised stream's id.

        The promised response then goes out on that stream like any other (`send_headers`,
        `send_data`). None, and nothing sent, when no push can be made: the client disabled push
        (its SETTINGS_ENABLE_PUSH, not ours), as many pushed streams are open as its
        SETTINGS_MAX_CONCURRENT_STREAMS allows, the connection is going away, `stream_id` is a
        pushed stream itself (§8.4: no push on a push) or we have ended it already.
        """
        h2_connection = self._h2
        client_settings = h2_connection.remote_settings
        if self.closing or self.closed or not client_settings.enable_push or not stream_id % 2:
            return None
        stream = h2_connection.streams.get(stream_id)
        if stream is None or not may_answer(stream):
            return None
        if self._pushed_streams_open() >= client_settings.max_concurrent_streams:
            return None
        try:
            promised_id = h2_connection.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:
            return None  # 2^30 pushes on one connection: no even stream id is left
        h2_connection.push_stream(stream_id, promised_id, request_headers)
        return promised_id

    def _pushed_streams_open(self) -> int:
        """Pushed streams not closed yet, the reserved ones included (each opens as soon as its
        response starts, and then counts against the client's limit, §5.1.2)."""
        return sum(
            1 for stream_id, stream in self._h2.streams.items()
            if not stream_id % 2 and not stream.closed
        )  # fmt: skip

    def send_data(
        self, stream_id: int, data: bytes | memoryview, end_stream: bool, write_now: bool = False
    ) -> bool:
        """Queue body bytes; they are framed by `data_to_send` when the scheduler picks the
        stream and the windows allow. Returns `has_room`: whether the sender may queue more.

        `write_now`: the transport has nothing buffered. A whole body that one DATA frame within
        both windows carries, while no other body waits, is then framed at once, as the next
        `data_to_send` would frame it (the common small response skips the queue and the
        scheduler)."""
        h2_connection = self._h2
        stream = h2_connection.streams.get(stream_id)
        if self.closed or stream is None:
            raise StreamGone(stream_id)
        if self._may_frame_at_once(stream_id, data, end_stream, write_now) and len(data) <= min(
            h2_connection.max_outbound_frame_size,
            stream.outbound_flow_control_window,
            h2_connection.outbound_flow_control_window,
        ):
            h2_connection.send_data(stream_id, data, end_stream=True)
            self._forget_stream(stream_id)
            return True
        output = self._outputs.get(stream_id)
        if output is None:
            priority = self._priorities.get(stream_id, DEFAULT_PRIORITY)
            output = self._outputs[stream_id] = StreamOutput(priority)
        if data:
            if not output.size:
                output.progress_at = None  # a queue that refills starts its send_timeout afresh
            output.append(data)
            self.queued_size += len(data)
            self._scheduler.push(stream_id, output.priority)
        if end_stream:
            output.end_stream = True
            if not output.size:
                self._finish_output(stream_id, output, end_sent=False)
        return self._has_room(output)

    def send_response(
        self,
        stream_id: int,
        headers: Headers,
        data: bytes,
        end_stream: bool,
        write_now: bool = False,
    ) -> bool:
        """`send_headers` (without END_STREAM), then `send_data`: a response's head and its
        first body part. A whole one that `send_data` would frame at once is framed in one
        step (a `priority` field would order what is left queued: nothing is). Returns
        `send_data`'s `has_room`."""
        if (
            not self.closed
            and self._may_frame_at_once(stream_id, data, end_stream, write_now)
            and self._h2.send_response(stream_id, headers, data)
        ):
            self._forget_stream(stream_id)
            return True
        self.send_headers(stream_id, headers, False)
        return self.send_data(stream_id, data, end_stream, write_now)

    def _may_frame_at_once(
        self, stream_id: int, data: bytes | memoryview, end_stream: bool, write_now: bool
    ) -> bool:
        """A body that skips the queue and the scheduler, if the windows take it: it is whole
        and not empty, the transport has nothing buffered, and no body waits anywhere."""
        return (
            write_now
            and end_stream
            and bool(data)
            and not self._scheduler.occupied
            and stream_id not in self._outputs
        )

    def end_stream(self, stream_id: int) -> None:
        """END_STREAM after whatever body is still queued."""
        if self.closed:
            raise StreamGone(stream_id)
        output = self._outputs.get(stream_id)
        if output is not None and output.size:
            output.end_stream = True
            return
        try:
            self._h2.end_stream(stream_id)
        except h2.exceptions.NoSuchStreamError as error:
            raise StreamGone(stream_id) from error
        self._forget_stream(stream_id)

    def has_room(self, stream_id: int) -> bool:
        """Whether the stream may queue more: its queue is short, and the connection's total is
        under the output cap (a stream with nothing queued may always queue, so all progress)."""
        output = self._outputs.get(stream_id)
        return output is None or self._has_room(output)

    def _has_room(self, output: StreamOutput) -> bool:
        size = output.size
        return not size or (
            size <= STREAM_QUEUE_LIMIT and self.queued_size <= self._limits.max_connection_output
        )

    def queued(self, stream_id: int) -> int:
        """Body bytes of the stream queued and not yet framed."""
        output = self._outputs.get(stream_id)
        return output.size if output is not None else 0

    def reset(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM now, dropping what was queued, unless the stream is already closed."""
        self._drop_output(stream_id)
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.NoSuchStreamError):
            self._h2.reset_stream(stream_id, error_code)

    def reset_when_sent(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM once the body queued so far is out: what the app sent still arrives (a
        whole answer to a request it did not read to the end, RFC 9113 §8.1; or the part it sent
        before failing)."""
        output = self._outputs.get(stream_id)
        if output is not None and output.size:
            output.reset_when_sent = error_code
        else:
            self.reset(stream_id, error_code)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The app consumed `size` flow-controlled bytes: let the client send that much more."""
        if size and not self.closed:
            self._h2.acknowledge_received_data(size, stream_id)

    @property
    def output_ready(self) -> bool:
        """A body waits that the windows would let out now: what `data_to_send` left for want
        of room, not of window (a ready stream whose own window is shut may still count once)."""
        return bool(self._scheduler.ready) and self._h2.outbound_flow_control_window > 0

    def data_to_send(self, max_bytes: int = MAX_WINDOW_SIZE, now: float = 0.0) -> bytes:
        """The bytes to write at `now`: frames already due, then DATA in scheduler order within
        both send windows and at most `max_bytes` of it (the room the transport has). `now` is
        read only while a body is queued or `send_deadline` is set."""
        if self._scheduler.occupied and not self.closed:
            self._frame_body(max_bytes, now)
        if self._outputs or self.send_deadline is not None:
            self._watch_sends(now)
        return self._h2.data_to_send()

    def _frame_body(self, budget: int, now: float) -> None:
        """DATA frames from the streams the scheduler picks, until the budget, the connection
        window or the ready streams run out. A stream without window leaves the scheduler until
        WINDOW_UPDATE: it never holds up the others."""
        h2_connection = self._h2
        scheduler = self._scheduler
        ready = scheduler.ready
        streams = h2_connection.streams
        frame_size = h2_connection.max_outbound_frame_size
        while budget > 0 and ready:
            connection_window = h2_connection.outbound_flow_control_window
            if connection_window <= 0:
                return
            if len(ready) > 1:
                stream_id: int = scheduler.next()  # type: ignore[assignment]
                allowance = scheduler.allowance()
            else:  # the one stream ready: nobody to share the turn with
                stream_id, allowance = next(iter(ready)), frame_size
            output = self._outputs[stream_id]
            stream = streams.get(stream_id)
            window = stream.outbound_flow_control_window if stream is not None else 0
            if window <= 0:
                scheduler.discard(stream_id)
                continue
            most = min(frame_size, window, connection_window, budget, allowance)
            chunk = output.take(most)
            size = len(chunk)
            self.queued_size -= size
            budget -= size
            ends = not output.size and output.end_stream and output.trailers is None
            try:
                h2_connection.send_data(stream_id, chunk, end_stream=ends)
            except h2.exceptions.StreamClosedError:
                self._drop_output(stream_id)  # closed under it (h2 saw the end first)
                continue
            if output.size:
                output.progress_at = now
                scheduler.sent(stream_id, size)
                continue
            scheduler.discard(stream_id)
            if ends and output.reset_when_sent is None:
                self._forget_stream(stream_id)  # the common end: no trailers, no reset
            elif output.finishing:
                self._finish_output(stream_id, output, end_sent=ends)

    def _finish_output(self, stream_id: int, output: StreamOutput, end_sent: bool) -> None:
        """The queue ran dry and the app has said how the stream ends: end it that way."""
        self._forget_stream(stream_id)
        if output.trailers is not None:
            self._h2.send_headers(stream_id, output.trailers, end_stream=True)
        elif output.end_stream and not end_sent:
            self._h2.end_stream(stream_id)
        if output.reset_when_sent is not None:
            self.reset(stream_id, output.reset_when_sent)

    def _drop_output(self, stream_id: int) -> None:
        output = self._outputs.get(stream_id)
        if output is not None:
            self.queued_size -= output.size
            self._scheduler.discard(stream_id)
        self._forget_stream(stream_id)

    def _forget_stream(self, stream_id: int) -> None:
        """Our side of the stream is over: no queue, no priority to keep."""
        self._outputs.pop(stream_id, None)
        if self._priorities:
            self._priorities.pop(stream_id, None)

    def _reschedule(self, stream_id: int) -> None:
        """The stream's window opened: back to the scheduler if it has body queued."""
        output = self._outputs.get(stream_id)
        if output is not None and output.size:
            self._scheduler.push(stream_id, output.priority)

    def _reschedule_all(self) -> None:
        for stream_id, output in self._outputs.items():
            if output.size:
                self._scheduler.push(stream_id, output.priority)

    def priority_of(self, stream_id: int) -> Priority:
        """The stream's priority now: its request's field, PRIORITY_UPDATEs, the app's field."""
        return self._priorities.get(stream_id, DEFAULT_PRIORITY)

    # -- what the admin plane shows ---------------------------------------------------------------

    def windows(self) -> tuple[int, int]:
        """The connection's flow-control windows: what we may send, what the peer may send."""
        h2_connection = self._h2
        return h2_connection.outbound_flow_control_window, h2_connection.inbound_flow_control_window

    def stream_view(self, stream_id: int) -> tuple[str, int | None]:
        """The stream's state ("open", "half-closed": the request is in, "closed") and the window
        it may send in (None once closed)."""
        stream = self._h2.streams.get(stream_id)
        if stream is None or stream.closed:
            return "closed", None
        state = "open" if request_open(stream) else "half-closed"
        return state, self._h2.local_flow_control_window(stream_id)
