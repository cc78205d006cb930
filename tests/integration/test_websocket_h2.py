"""RFC 8441: WebSockets on HTTP/2 streams (extended CONNECT), against a live server."""

from __future__ import annotations

import signal
import time

import h2.events
import h2.settings
import pytest
from hyperframe.frame import DataFrame, HeadersFrame
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from tests.conformance.frames import RawClient
from tests.integration.apps.websocket_apps import flood_message
from tests.server_process import ServerProcess, running_server
from tests.support.h2_websocket import H2WebSocketClient
from tests.support.websocket import (
    FLOOD_COUNT,
    FLOOD_SIZE,
    MIB,
    RSS_GROWTH_LIMIT,
    STALL_SECONDS,
    PeakRss,
    new_marker,
)

WEBSOCKET_APPS = "tests.integration.apps.websocket_apps:app"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client(server: ServerProcess):  # type: ignore[no-untyped-def]
    connection = H2WebSocketClient(server.host, server.port)
    yield connection
    connection.close()


def test_the_server_offers_extended_connect(client: H2WebSocketClient) -> None:
    setting = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
    assert client.h2.remote_settings[setting] == 1


def test_echo_on_a_stream_and_the_close_handshake_ends_it(client: H2WebSocketClient) -> None:
    stream_id, status, fields = client.open("/ws/echo", extra=[("sec-websocket-protocol", "chat")])
    assert status == 200
    assert fields[b"sec-websocket-protocol"] == b"chat"
    assert b"sec-websocket-accept" not in fields and b"upgrade" not in fields
    websocket = client.websocket(stream_id)
    websocket.send(TextMessage("hello over h2"))
    assert websocket.next_event() == TextMessage("hello over h2")
    websocket.send(BytesMessage(b"\x00" * 100_000))
    received = b""
    while len(received) < 100_000:
        event = websocket.next_event()
        assert isinstance(event, BytesMessage)
        received += event.data
    assert received == b"\x00" * 100_000
    websocket.send(Ping(b"p"))
    assert websocket.next_event() == Pong(b"p")
    websocket.send(CloseConnection(1000, "done"))
    answer = websocket.next_event()
    assert isinstance(answer, CloseConnection) and answer.code == 1000
    client.wait(websocket.ended)  # END_STREAM follows the Close


def test_two_websockets_share_one_connection(client: H2WebSocketClient) -> None:
    first = client.websocket(client.open("/ws/echo")[0])
    second = client.websocket(client.open("/ws/echo")[0])
    first.send(TextMessage("one"))
    second.send(TextMessage("two"))
    assert second.next_event() == TextMessage("two")
    assert first.next_event() == TextMessage("one")


def test_another_protocol_or_a_refusal_gets_an_http_status(client: H2WebSocketClient) -> None:
    assert client.open("/ws/echo", protocol="webtransport")[1] == 501
    assert client.open("/not-a-websocket")[1] == 403  # the demo closes before accepting


def test_a_stop_sends_close_1001_on_the_stream() -> None:
    """Raw frames: h2's client refuses frames after a GOAWAY, and a stop sends GOAWAY first."""
    with running_server("--graceful-timeout", "0.5") as server:
        with RawClient(server.host, server.port) as client:
            client.handshake()
            stream_id = client.next_stream_id()
            headers = [
                *client.request_headers("/ws/echo", "CONNECT"),
                (":protocol", "websocket"),
                ("sec-websocket-version", "13"),
            ]
            client.send_headers(stream_id, headers, end_stream=False)
            client.wait_for(lambda f: isinstance(f, HeadersFrame), "the 200")
            server.signal(signal.SIGTERM)
            frames = client.expect_closed(timeout=10)
        websocket = Connection(ConnectionType.CLIENT)
        for frame in frames:
            if isinstance(frame, DataFrame) and frame.stream_id == stream_id:
                websocket.receive_data(frame.data)
        closes = [e for e in websocket.events() if isinstance(e, CloseConnection)]
        assert [close.code for close in closes] == [1001]
        assert server.process.wait(10) == 0


def test_a_connect_that_ends_its_stream_at_once_is_a_failed_websocket() -> None:
    """END_STREAM on the extended CONNECT: the client's side ended before any Close, which the
    app hears as disconnect 1006 (abnormal closure)."""
    marker = new_marker()
    with (
        running_server(app=WEBSOCKET_APPS) as server,
        RawClient(server.host, server.port) as client,
    ):
        client.handshake()
        headers = [
            *client.request_headers(f"/record/{marker}", "CONNECT"),
            (":protocol", "websocket"),
            ("sec-websocket-version", "13"),
        ]
        client.send_headers(client.next_stream_id(), headers, end_stream=True)
        server.wait_for_line(rf"record {marker}: disconnect 1006\b", timeout=5)


def test_a_forbidden_frame_gets_close_1002_then_rst_stream(client: H2WebSocketClient) -> None:
    stream_id, status, _ = client.open("/ws/echo")
    assert status == 200
    unmasked_text = b"\x81\x02hi"  # clients must mask (RFC 6455 §5.1)
    client.h2.send_data(stream_id, unmasked_text)
    client.flush()
    websocket = client.websocket(stream_id)
    close = websocket.next_event()
    assert isinstance(close, CloseConnection) and close.code == 1002
    client.wait(lambda: any(isinstance(e, h2.events.StreamReset) for e in client.events))
    (reset,) = [e for e in client.events if isinstance(e, h2.events.StreamReset)]
    assert (reset.stream_id, reset.error_code) == (stream_id, 0x8)  # CANCEL


def test_a_stalled_reader_on_a_stream_holds_the_app_back_with_flat_memory() -> None:
    """HTTP/2 flow control is the send queue's bound: while the client reads nothing, the app's
    sends wait; then everything arrives intact."""
    with running_server(app=WEBSOCKET_APPS) as server:
        marker = new_marker()
        path = f"/flood/{marker}?count={FLOOD_COUNT}&size={FLOOD_SIZE}"
        sent_line = rf"flood {marker}: sent {FLOOD_COUNT}$"
        client = H2WebSocketClient(server.host, server.port)
        try:
            with PeakRss(server) as rss:
                websocket = client.websocket(client.open(path)[0])
                with pytest.raises(TimeoutError):
                    server.wait_for_line(sent_line, timeout=STALL_SECONDS)
                stalled_growth = rss.growth
                mismatched = []
                for index in range(FLOOD_COUNT):
                    received = b""
                    while True:  # wsproto hands a large message over in parts
                        event = websocket.next_event(timeout=30)
                        assert isinstance(event, BytesMessage)
                        received += event.data
                        if event.message_finished:
                            break
                    if received != flood_message(index, FLOOD_SIZE):
                        mismatched.append(index)
        finally:
            client.close()
        server.wait_for_line(sent_line, timeout=5)
        print(f"\nstalled reader, HTTP/2: RSS +{stalled_growth / MIB:.1f} MiB while stalled")
        assert mismatched == []
        assert stalled_growth < RSS_GROWTH_LIMIT, f"RSS grew {stalled_growth / MIB:.1f} MiB"


def test_a_stream_that_answers_pings_stays_and_a_silent_one_is_closed_1011() -> None:
    """The keep-alive is per WebSocket: the connection's own PINGs are answered by the client's
    HTTP/2 stack whatever the app behind one stream does."""
    with running_server("--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.3") as server:
        client = H2WebSocketClient(server.host, server.port)
        try:
            lively_id, status, _ = client.open("/ws/echo")
            assert status == 200
            lively = client.websocket(lively_id)
            for _ in range(4):  # four rounds of interval + timeout, each Ping answered
                ping = lively.next_event(timeout=5)
                assert isinstance(ping, Ping)
                lively.send(ping.response())
            lively.send(TextMessage("still here"))
            assert lively.next_event(timeout=5) == TextMessage("still here")

            silent_id, status, _ = client.open("/ws/echo")
            assert status == 200
            silent = client.websocket(silent_id)
            opened = time.monotonic()
            assert isinstance(silent.next_event(timeout=5), Ping)
            close = silent.next_event(timeout=5)
            elapsed = time.monotonic() - opened
            assert isinstance(close, CloseConnection) and close.code == 1011
            assert elapsed < 1.5, f"closed {elapsed:.2f}s after opening (interval 0.3 + 0.3)"
        finally:
            client.close()
