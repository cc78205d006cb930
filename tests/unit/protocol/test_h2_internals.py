"""The parts of h2 that osmium/protocol/h2_internals.py relies on but h2 does not document.

Each test names what an h2 upgrade must still provide; a failure here means h2_internals.py
needs a look before anything else does.
"""

from __future__ import annotations

import functools
import inspect

import h2.config
import h2.connection
import h2.exceptions
import h2.frame_buffer
import h2.settings
import h2.stream
import hypothesis
import pytest
from h2.settings import SettingCodes
from h2.windows import WindowManager
from hyperframe.frame import DataFrame, Frame, HeadersFrame
from hypothesis import strategies as st

from osmium.protocol.h2_internals import (
    ANSWERING_STATES,
    RECEIVED_CLASSES,
    UNLIMITED_STREAMS,
    LeanSettings,
    PlainConfig,
    ServerFrameBuffer,
    ServerH2Connection,
    _consumed,
    _processed,
    final_headers_sent,
    may_answer,
    request_open,
    server_config,
)

#: H2Connection methods ServerH2Connection overrides or calls, with their parameters.
OVERRIDDEN_METHODS = {
    "_prepare_for_sending": ["self", "frames"],
    "_receive_headers_frame": ["self", "frame"],
    "_receive_data_frame": ["self", "frame"],
    "_receive_window_update_frame": ["self", "frame"],
    "_receive_rst_stream_frame": ["self", "frame"],
    "_receive_alt_svc_frame": ["self", "frame"],
    "_receive_goaway_frame": ["self", "frame"],
    "_stream_closed_by": ["self", "stream_id"],
    "_terminate_connection": ["self", "error_code"],
    "_open_streams": ["self", "remainder"],
}


@pytest.mark.parametrize(("name", "parameters"), OVERRIDDEN_METHODS.items())
def test_h2_connection_still_has_the_private_methods_we_override(
    name: str, parameters: list[str]
) -> None:
    method = getattr(h2.connection.H2Connection, name)
    assert list(inspect.signature(method).parameters) == parameters


def test_h2_still_reads_open_inbound_streams_as_a_property() -> None:
    """We cap it to keep h2's own MAX_CONCURRENT_STREAMS check from ending the connection."""
    assert isinstance(h2.connection.H2Connection.open_inbound_streams, property)


def test_h2_streams_still_track_the_expected_content_length() -> None:
    stream = h2.stream.H2Stream(1, h2.config.H2Configuration(), 65_535, 65_535)
    assert stream._expected_content_length is None


def test_h2_streams_still_keep_what_the_short_path_updates() -> None:
    """ServerH2Connection._take_body does what H2Stream.receive_data does, through these."""
    stream = h2.stream.H2Stream(1, h2.config.H2Configuration(), 65_535, 65_535)
    assert stream._inbound_window_manager.current_window_size == 65_535
    assert list(inspect.signature(stream._track_content_length).parameters) == [
        "length",
        "end_stream",
    ]
    connection = h2.connection.H2Connection()
    assert connection._inbound_flow_control_window_manager.current_window_size == 65_535


def test_h2_transitions_the_short_path_skips_still_change_nothing() -> None:
    """_take_body skips the state machines where h2's transition keeps the state and only
    checks that the headers came first (or does nothing at all)."""
    stream_transitions = h2.stream._transitions
    for state in (h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_LOCAL):
        action, target = stream_transitions[(state, h2.stream.StreamInputs.RECV_DATA)]
        assert (action, target) == (h2.stream.H2StreamStateMachine.data_received, state)
    open_state = h2.connection.ConnectionState.SERVER_OPEN
    connection_transitions = h2.connection.H2ConnectionStateMachine._transitions
    assert connection_transitions[(open_state, h2.connection.ConnectionInputs.RECV_DATA)] == (
        None,
        open_state,
    )


def test_h2_transitions_of_a_request_and_its_response_are_still_those_done_here() -> None:
    """_take_request, send_headers and send_data set these states themselves (and skip the
    connection's transitions that keep SERVER_OPEN)."""
    inputs, states, machine = (
        h2.stream.StreamInputs,
        h2.stream.StreamState,
        h2.stream.H2StreamStateMachine,
    )
    stream_transitions = h2.stream._transitions
    assert stream_transitions[(states.IDLE, inputs.RECV_HEADERS)] == (
        machine.request_received,
        states.OPEN,
    )
    assert stream_transitions[(states.OPEN, inputs.RECV_END_STREAM)] == (
        machine.stream_half_closed,
        states.HALF_CLOSED_REMOTE,
    )
    assert stream_transitions[(states.HALF_CLOSED_REMOTE, inputs.SEND_END_STREAM)] == (
        machine.send_end_stream,
        states.CLOSED,
    )
    for state in ANSWERING_STATES:
        assert stream_transitions[(state, inputs.SEND_HEADERS)] == (machine.response_sent, state)
        assert stream_transitions[(state, inputs.SEND_DATA)] == (None, state)
    open_state = h2.connection.ConnectionState.SERVER_OPEN
    connection_inputs = h2.connection.ConnectionInputs
    transitions = h2.connection.H2ConnectionStateMachine._transitions
    idle = h2.connection.ConnectionState.IDLE
    for kept in (connection_inputs.SEND_SETTINGS, connection_inputs.SEND_WINDOW_UPDATE):
        assert transitions[(idle, kept)] == (None, idle)
    for kept in (
        connection_inputs.RECV_HEADERS,
        connection_inputs.SEND_HEADERS,
        connection_inputs.SEND_DATA,
    ):
        assert transitions[(open_state, kept)] == (None, open_state)


def test_open_streams_counts_and_forgets_as_h2s_and_keeps_the_newest_closed() -> None:
    """The same count and the same record of closed streams as h2's SizeLimitDict keeps."""
    ours, theirs = (
        ServerH2Connection(server_config(False)),
        h2.connection.H2Connection(h2.config.H2Configuration(client_side=False)),
    )
    states = list(h2.stream.StreamState) * 3
    for connection in (ours, theirs):
        for stream_id, state in enumerate(states, start=1):
            stream = h2.stream.H2Stream(stream_id, connection.config, 65_535, 65_535)
            stream.state_machine.state = state
            if stream_id % 3:
                stream.state_machine.stream_closed_by = h2.stream.StreamClosedBy.RECV_END_STREAM
            connection.streams[stream_id] = stream
    for remainder in (1, 0):
        assert ours._open_streams(remainder) == theirs._open_streams(remainder)
    assert ours.streams.keys() == theirs.streams.keys()
    assert list(ours._closed_streams.items()) == list(theirs._closed_streams.items())
    assert list(ours._closed_streams) == [7, 14, 21]
    ours.MAX_CLOSED_STREAMS = 2
    ours.streams[99] = stream  # one more closed stream
    ours._open_streams(1)
    assert list(ours._closed_streams) == [21, 99]  # the newest two


def test_h2_streams_still_expose_their_state_machine() -> None:
    """may_answer and final_headers_sent read it before a PUSH_PROMISE or a 1xx."""
    stream = h2.stream.H2Stream(1, h2.config.H2Configuration(), 65_535, 65_535)
    assert stream.state_machine.state is h2.stream.StreamState.IDLE
    assert not may_answer(stream) and not final_headers_sent(stream)
    assert not request_open(stream)


def test_h2_frame_buffer_still_keeps_the_state_our_buffer_peeks_at() -> None:
    """ServerFrameBuffer reads the unparsed bytes, the preface count and the open header block."""
    buffer = h2.frame_buffer.FrameBuffer(server=True)
    assert isinstance(buffer._data, bytearray)
    assert isinstance(buffer._preamble_len, int)
    assert buffer._headers_buffer == []
    assert callable(h2.frame_buffer.FrameBuffer.__next__)


def test_plain_config_shadows_every_option_h2_sets_in_its_constructor() -> None:
    """h2's options are descriptors; ours must be plain class attributes for each of them."""
    options = [
        name
        for name, value in vars(h2.config.H2Configuration).items()
        if hasattr(value, "__set__") and not name.startswith("__")
    ]
    assert options, "h2's configuration has no descriptors any more: PlainConfig is moot"
    for name in options:
        assert name in vars(PlainConfig), f"PlainConfig does not shadow h2's {name!r}"
        assert not hasattr(vars(PlainConfig)[name], "__get__")


def test_plain_config_keeps_the_values_it_is_given() -> None:
    config = server_config(debug_frames=False)
    assert config.client_side is False
    assert config.validate_inbound_headers is False  # osmium checks them: h2_headers.py
    assert config.normalize_inbound_headers is True
    assert config.header_encoding is None
    assert ServerH2Connection(config=config).config is config


def test_our_connection_starts_with_what_h2s_init_sets() -> None:
    """ServerH2Connection does not call h2's __init__: it sets every attribute h2's sets, to
    equal values (the frame buffer, settings, encoder and decoder: of the same kinds)."""
    config = server_config(debug_frames=False)
    ours, theirs = ServerH2Connection(config), h2.connection.H2Connection(config)
    assert set(vars(theirs)) <= set(vars(ours))
    kinds = {"incoming_buffer", "local_settings", "remote_settings", "encoder", "decoder"}
    for name, value in vars(theirs).items():
        if name in kinds:
            assert isinstance(getattr(ours, name), type(value)) or name.endswith("settings")
        elif name == "_frame_dispatch_table":
            dispatch = ours._frame_dispatch_table
            assert {k: m.__name__ for k, m in value.items()} == {
                k: dispatch[k].__name__ for k in value
            }
        elif name in ("state_machine", "_inbound_flow_control_window_manager"):
            assert vars(getattr(ours, name)) == vars(value)
        elif name != "_closed_streams":  # an OrderedDict, trimmed by _open_streams
            assert getattr(ours, name) == value, name
    assert dict(ours.local_settings) == dict(theirs.local_settings)
    assert dict(ours.remote_settings) == dict(theirs.remote_settings)


def test_lean_settings_behave_as_h2s() -> None:
    """The same updates and acknowledgements give the same values and the same changes."""
    initial = {SettingCodes.MAX_CONCURRENT_STREAMS: 100, SettingCodes.INITIAL_WINDOW_SIZE: 1000}
    ours, theirs = LeanSettings(False, initial), h2.settings.Settings(False, initial)
    for settings in (ours, theirs):
        settings[SettingCodes.INITIAL_WINDOW_SIZE] = 2000
        settings[SettingCodes.MAX_HEADER_LIST_SIZE] = 4096  # a setting not there before
        settings[SettingCodes.INITIAL_WINDOW_SIZE] = 3000

    def values(settings: h2.settings.Settings) -> dict:
        return {code: settings.get(code) for code in SettingCodes}

    def changes(settings: h2.settings.Settings) -> dict:
        changed = settings.acknowledge()
        return {code: (c.original_value, c.new_value) for code, c in changed.items()}

    assert values(ours) == values(theirs)  # nothing acknowledged yet: the old values
    for _ in range(3):
        assert changes(ours) == changes(theirs)
        assert values(ours) == values(theirs)
    assert ours.initial_window_size == 3000 and ours.max_header_list_size == 4096
    assert ours.max_concurrent_streams == theirs.max_concurrent_streams == 100
    assert ours.initial_window_size == theirs.initial_window_size
    assert ours.max_frame_size == theirs.max_frame_size == 16_384
    for settings in (ours, theirs):
        settings.initial_window_size = 5000
        settings.max_frame_size = 32_768
        settings.acknowledge()
    assert (ours.initial_window_size, ours.max_frame_size) == (5000, 32_768)
    assert (theirs.initial_window_size, theirs.max_frame_size) == (5000, 32_768)
    fresh = LeanSettings(client=True)
    assert fresh.max_concurrent_streams == h2.settings.Settings().max_concurrent_streams
    fresh.max_concurrent_streams = 7
    assert fresh.max_concurrent_streams == UNLIMITED_STREAMS  # until acknowledged, as h2's
    fresh.acknowledge()
    assert fresh.max_concurrent_streams == 7
    with pytest.raises(h2.exceptions.InvalidSettingsValueError):
        ours[SettingCodes.ENABLE_PUSH] = 2


def test_lean_settings_start_as_h2s_and_apart_from_each_other() -> None:
    """Made from values h2 made and checked once: the same start, invalid values refused
    each time, and no list shared between two of them."""
    initial = {SettingCodes.MAX_CONCURRENT_STREAMS: 50, SettingCodes.MAX_FRAME_SIZE: 32_768}
    for client in (True, False):
        theirs = h2.settings.Settings(client, initial)
        first, second = LeanSettings(client, initial), LeanSettings(client, initial)
        assert first._client == theirs._client == client
        assert first._settings == {key: list(values) for key, values in theirs._settings.items()}
        first[SettingCodes.MAX_FRAME_SIZE] = 65_536
        assert second._settings[SettingCodes.MAX_FRAME_SIZE] == [32_768]
    for _ in range(2):
        with pytest.raises(h2.exceptions.InvalidSettingsValueError):
            LeanSettings(False, {SettingCodes.MAX_FRAME_SIZE: 1})


def test_h2_settings_still_keep_their_values_where_lean_settings_replace_them() -> None:
    assert callable(h2.settings._validate_setting)
    assert isinstance(h2.settings.Settings()._settings, dict)


def test_frames_go_out_as_h2_would_write_them() -> None:
    """DATA frames queued as header + payload chunks, SETTINGS made once, WINDOW_UPDATE packed:
    the same bytes as h2's own serialising, padded DATA and other frames included, whether
    taken whole or in pieces, and the same connection window."""
    client = h2.connection.H2Connection()
    client.initiate_connection()
    preface = client.data_to_send()
    outputs = []
    windows = []
    for connection in (ServerH2Connection(config=server_config(False)),
                       h2.connection.H2Connection(config=server_config(False))):  # fmt: skip
        connection.initiate_connection()
        connection.increment_flow_control_window(100_000)
        windows.append(vars(connection._inbound_flow_control_window_manager))
        connection.receive_data(preface)
        connection.receive_data(request_frames())
        connection.send_headers(1, [(b":status", b"200")])
        connection.send_data(1, b"x" * 1000)
        connection.send_data(1, b"padded", pad_length=7)
        connection.ping(b"12345678")
        connection.send_data(1, b"", end_stream=True)
        first = connection.data_to_send(50)
        outputs.append(first + connection.data_to_send())
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 1000
    assert windows[0] == windows[1]


def request_frames() -> bytes:
    client = h2.connection.H2Connection()
    client.initiate_connection()
    client.data_to_send()
    headers = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "a")]
    client.send_headers(1, headers, end_stream=True)
    return client.data_to_send()


def served_pair() -> list[h2.connection.H2Connection]:
    """Ours and h2's own, each past the preface with streams 1 and 3 requested."""
    client = h2.connection.H2Connection()
    client.initiate_connection()
    headers = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "a")]
    client.send_headers(1, headers, end_stream=True)
    client.send_headers(3, headers, end_stream=True)
    wire = client.data_to_send()
    pair = [ServerH2Connection(config=server_config(False)),
            h2.connection.H2Connection(config=server_config(False))]  # fmt: skip
    for connection in pair:
        connection.initiate_connection()
        connection.receive_data(wire)
        connection.data_to_send()
    return pair


def outcome(connection: h2.connection.H2Connection, operation: tuple) -> tuple:
    name, *arguments = operation
    try:
        getattr(connection, name)(*arguments)
    except h2.exceptions.H2Error as error:
        return (type(error).__name__,)
    stream = connection.streams.get(arguments[0])
    state = None
    if stream is not None:
        state = (
            vars(stream.state_machine),
            stream.outbound_flow_control_window,
            stream.request_method,
        )
    return connection.data_to_send(), connection.outbound_flow_control_window, state


BIG_VALUE = b"v" * 40_000  # a header block over one frame: HEADERS and CONTINUATIONs


@pytest.mark.parametrize(
    "operations",
    [
        [("send_headers", 1, [(b":status", b"200")], False), ("send_data", 1, b"x" * 100, True)],
        [("send_headers", 1, [(b":status", b"204")], True), ("send_data", 1, b"late", False)],
        [("send_headers", 1, [(b":status", b"103"), (b"link", b"</a>")], False),
         ("send_headers", 1, [(b":status", b"200")], False), ("send_data", 1, b"body", False),
         ("send_headers", 1, [(b"x-trailer", b"1")], True)],
        [("send_headers", 1, [(b":status", b"103")], True)],
        [("send_headers", 1, [(b":status", b"200"), (b"x-big", BIG_VALUE)], True)],
        [("send_headers", 1, [(b":status", b"200")], False),
         ("send_data", 1, b"y" * 70_000, False)],
        [("send_headers", 1, [(b":status", b"200")], False), ("send_data", 1, b"z" * 16_384, False),
         ("send_data", 1, b"z" * 16_384, False), ("send_data", 1, b"z" * 16_384, False),
         ("send_data", 1, b"z" * 16_383, False), ("send_data", 1, b"!", False),
         ("send_data", 3, b"0", False)],
        [("send_headers", 1, [(b":status", b"200")], False),
         ("send_headers", 1, [(b"x-trailer", b"1")], False)],
        [("send_headers", 5, [(b":status", b"200")], False)],
        [("reset_stream", 1, 8), ("send_headers", 1, [(b":status", b"200")], False),
         ("send_data", 1, b"late", True)],
    ],
    ids=["response", "after-end", "early-hints-and-trailers", "informational-end", "continuation",
         "over-a-frame", "windows", "trailers-without-end", "unknown-stream", "after-reset"],
)  # fmt: skip
def test_our_headers_and_data_frames_are_h2s(operations: list) -> None:
    """The send path framed here gives what h2's gives: bytes, windows, states and errors."""
    ours, theirs = served_pair()
    for operation in operations:
        assert outcome(ours, operation) == outcome(theirs, operation), operation


def read_after_preface(buffer: ServerFrameBuffer, frame: Frame) -> Frame:
    buffer.max_frame_size = 16384
    buffer.add_data(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    settings = h2.connection.H2Connection()
    settings.initiate_connection()
    buffer.add_data(settings.data_to_send()[24:])
    next(buffer)  # the client's SETTINGS
    buffer.add_data(frame.serialize())
    return next(buffer)


def test_received_frames_are_dispatched_and_cheap_to_describe() -> None:
    """h2 formats every received frame (repr) for its trace log: a frame says its type, stream
    and size instead of sorting its flags and hex-encoding its body, and still reaches h2's
    handling of its type."""
    frame = read_after_preface(ServerFrameBuffer(65536), DataFrame(1, data=b"x" * 16384))
    assert isinstance(frame, DataFrame)
    assert repr(frame) == "ReceivedDataFrame(stream_id=1): 16384 bytes"
    headers = read_after_preface(
        ServerFrameBuffer(65536), HeadersFrame(1, data=b"\x82", flags=["END_HEADERS"])
    )
    assert isinstance(headers, HeadersFrame) and "1 bytes" in repr(headers)
    ours, _ = served_pair()
    handled = h2.connection.H2Connection()._frame_dispatch_table
    for frame_class, received_class in RECEIVED_CLASSES.items():
        assert (received_class in ours._frame_dispatch_table) == (frame_class in handled)


def test_logged_frames_keep_their_full_description_but_data() -> None:
    """With --debug-frames a HEADERS frame is described by hyperframe; a DATA frame by its size."""
    headers = read_after_preface(
        ServerFrameBuffer(65536, logging_frames=True),
        HeadersFrame(1, data=b"\x82", flags=["END_HEADERS"]),
    )
    assert "stream_weight" in repr(headers)
    data = read_after_preface(
        ServerFrameBuffer(65536, logging_frames=True), DataFrame(1, data=b"x" * 100)
    )
    assert repr(data) == "ReceivedDataFrame(stream_id=1): 100 bytes"


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    size=st.one_of(st.sampled_from([1, 100, 3_000, 65_535]), st.integers(1, 70_000)),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["consumed", "processed", "opened", "all-consumed"]),
            st.integers(0, 40_000),
        ),
        max_size=30,
    ),
)
def test_window_steps_done_here_are_h2s(size: int, steps: list[tuple[str, int]]) -> None:
    """_consumed and _processed change a window as WindowManager's window_consumed and
    process_bytes do, and give the same increments and errors."""
    ours, theirs = WindowManager(size), WindowManager(size)
    for step, amount in steps:
        if step == "all-consumed":  # a shut window, which reopens sooner
            step, amount = "consumed", theirs.current_window_size
        if step == "opened":
            results = [ours.window_opened(amount), theirs.window_opened(amount)]
        else:
            own = _consumed if step == "consumed" else _processed
            h2s = theirs.window_consumed if step == "consumed" else theirs.process_bytes
            results = []
            for call in (functools.partial(own, ours), h2s):
                try:
                    results.append(call(amount) or 0)
                except h2.exceptions.FlowControlError:
                    results.append("FlowControlError")
        assert results[0] == results[1]
        assert vars(ours) == vars(theirs)
        if results[0] == "FlowControlError":
            break
