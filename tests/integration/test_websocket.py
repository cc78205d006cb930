"""WebSockets over HTTP/1.1 (RFC 6455) with real clients against a real server process.

The `websockets` library is the client wherever it can be (echo, close codes, subprotocols, denials,
permessage-deflate, TLS, 200 connections); a raw socket (tests/support/websocket.py) where a client
must misbehave: keep sending past the size limit, stop reading, drop TCP, never answer a Ping.
The apps are in tests/integration/apps/websocket_apps.py; the demo app's /ws/echo serves the echoes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import signal
import ssl
import threading
import time
import zlib
from collections.abc import Iterator

import pytest
import websockets.asyncio.client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Opcode as WireOpcode
from websockets.sync.client import connect

from tests.conftest import TLSFiles
from tests.integration.apps.websocket_apps import DENY_BODY, flood_message
from tests.integration.support import wait_until
from tests.server_process import ServerProcess, running_server
from tests.support.websocket import (
    FLOOD_COUNT,
    FLOOD_SIZE,
    MIB,
    RSS_GROWTH_LIMIT,
    STALL_SECONDS,
    Opcode,
    PeakRss,
    WebSocketConnection,
    frame_header,
    mask,
    new_marker,
)

APP = "tests.integration.apps.websocket_apps:app"
#: How soon the app must hear of a connection lost without a Close frame.
PROMPTLY = 1.0
#: The default --ws-max-message-size: the largest message the server must take whole.
DEFAULT_MAX_MESSAGE = 16 * MIB
SMALL_MAX_MESSAGE = MIB
OVERSIZED_TOTAL = 64 * MIB
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def apps_server() -> Iterator[ServerProcess]:
    with running_server(app=APP) as process:
        yield process
        assert process.stop() == 0, process.output
        assert "Traceback" not in process.output, process.output


def ws_url(server: ServerProcess, path: str) -> str:
    scheme = "wss" if server.scheme == "https" else "ws"
    return f"{scheme}://{server.host}:{server.port}{path}"


# -- echo ------------------------------------------------------------------------------------------


def test_text_and_binary_echo(server: ServerProcess) -> None:
    with connect(ws_url(server, "/ws/echo"), open_timeout=10) as ws:
        ws.send("héllo wörld")
        text = ws.recv(timeout=5)
        ws.send(b"\x00\xff" * 1000)
        data = ws.recv(timeout=5)
    assert text == "héllo wörld"
    assert data == b"\x00\xff" * 1000


def test_a_16_mib_message_is_echoed_intact(server: ServerProcess) -> None:
    # Random bytes: permessage-deflate (on by default) cannot shrink them below the limit.
    payload = random.Random(16).randbytes(DEFAULT_MAX_MESSAGE)
    with connect(ws_url(server, "/ws/echo"), open_timeout=10, max_size=None) as ws:
        ws.send(payload)
        echoed = ws.recv(timeout=60)
    assert len(echoed) == len(payload)
    assert echoed == payload


def test_a_fragmented_message_is_reassembled(server: ServerProcess) -> None:
    with connect(ws_url(server, "/ws/echo"), open_timeout=10) as ws:
        ws.send([b"frag", b"men", b"ted ", b"bytes"])
        data = ws.recv(timeout=5)
        ws.send(["frag", "mented ", "tëxt"])
        text = ws.recv(timeout=5)
    assert data == b"fragmented bytes"
    assert text == "fragmented tëxt"


def test_a_client_ping_gets_its_pong(server: ServerProcess) -> None:
    with connect(ws_url(server, "/ws/echo"), open_timeout=10, ping_interval=None) as ws:
        pong = ws.ping(b"are you there")
        assert pong.wait(5), "no Pong for the Ping"
        ws.send("after the ping")
        assert ws.recv(timeout=5) == "after the ping"


def test_200_concurrent_connections_each_echo(server: ServerProcess) -> None:
    url = ws_url(server, "/ws/echo")

    async def echo_once(index: int) -> str:
        async with websockets.asyncio.client.connect(url, open_timeout=20) as ws:
            await ws.send(f"message {index}")
            return str(await asyncio.wait_for(ws.recv(), 20))

    async def all_at_once() -> list[str]:
        return await asyncio.gather(*(echo_once(index) for index in range(200)))

    assert asyncio.run(all_at_once()) == [f"message {index}" for index in range(200)]


# -- the scope, subprotocols, close codes ----------------------------------------------------------


def test_scope_of_a_websocket(apps_server: ServerProcess) -> None:
    with connect(ws_url(apps_server, "/scope/x%20y?q=1"), open_timeout=10) as ws:
        scope = json.loads(ws.recv(timeout=5))
    assert scope["type"] == "websocket"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope/x y"
    assert scope["raw_path"] == "/scope/x%20y"
    assert scope["query_string"] == "q=1"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == []
    assert "websocket.http.response" in scope["extensions"]
    assert ["upgrade", "websocket"] in [[n, v.lower()] for n, v in scope["headers"]]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", apps_server.port]


def test_the_app_picks_a_subprotocol_from_those_offered(apps_server: ServerProcess) -> None:
    with connect(ws_url(apps_server, "/scope"), open_timeout=10, subprotocols=["a", "b"]) as ws:
        scope = json.loads(ws.recv(timeout=5))
        assert ws.subprotocol == "b"
        # websocket.accept's own headers go out with the 101.
        assert ws.response.headers.get("X-Accepted") == "yes"
    assert scope["subprotocols"] == ["a", "b"]


def test_the_demo_echo_accepts_the_first_subprotocol(server: ServerProcess) -> None:
    with connect(ws_url(server, "/ws/echo"), open_timeout=10, subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "a"


def test_client_close_code_and_reason_reach_the_app(apps_server: ServerProcess) -> None:
    marker = new_marker()
    with connect(ws_url(apps_server, f"/record/{marker}"), open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.close(4001, "bye")
        # The server completed the closing handshake: its Close frame came back.
        assert ws.protocol.close_rcvd is not None
    apps_server.wait_for_line(rf"record {marker}: disconnect 4001 bye$", timeout=5)


def test_app_close_code_and_reason_reach_the_client(apps_server: ServerProcess) -> None:
    url = ws_url(apps_server, "/close?code=4002&reason=going+home")
    with connect(url, open_timeout=10) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None, "TCP closed without a Close frame"
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4002, "going home")


# -- denials ---------------------------------------------------------------------------------------


def test_close_before_accept_is_a_403(apps_server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(apps_server, "/deny"), open_timeout=10)
    assert refused.value.response.status_code == 403


def test_http_response_extension_denies_with_that_response(apps_server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(apps_server, "/deny-http"), open_timeout=10)
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.body == DENY_BODY


# -- permessage-deflate (RFC 7692) -----------------------------------------------------------------


def compressible(size: int) -> str:
    words = [f"item {number}: {'ok' if number % 3 else 'retry'}; " for number in range(500)]
    text = "".join(words)
    return (text * (size // len(text) + 1))[:size]


def test_permessage_deflate_is_negotiated_by_default(server: ServerProcess) -> None:
    message = compressible(MIB)
    with connect(ws_url(server, "/ws/echo"), open_timeout=10, max_size=2 * MIB) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        ws.send(message)
        echoed = ws.recv(timeout=10)
    assert "permessage-deflate" in extensions
    assert echoed == message


def test_the_server_compresses_what_it_sends(server: ServerProcess) -> None:
    message = compressible(MIB).encode()
    with WebSocketConnection.open(
        server.host, server.port, extensions="permessage-deflate"
    ) as connection:
        assert b"permessage-deflate" in (
            connection.response.header(b"sec-websocket-extensions") or b""
        )
        # RFC 7692 §6: a client may send a message uncompressed (RSV1 clear) even so.
        connection.send_frame(Opcode.BINARY, message)
        frames = [connection.expect_frame(10)]
        while not frames[-1].fin:
            frames.append(connection.expect_frame(10))
    assert frames[0].opcode == Opcode.BINARY and frames[0].rsv1
    compressed = b"".join(frame.payload for frame in frames)
    assert len(compressed) < len(message) // 4  # 4 KiB windows: about 7x on this text
    # §7.2.2: the sender removed the 0x00 0x00 0xff 0xff tail; the receiver puts it back.
    assert zlib.decompressobj(wbits=-15).decompress(compressed + b"\x00\x00\xff\xff") == message


def test_the_server_keeps_to_the_window_the_client_asked_for(server: ServerProcess) -> None:
    # RFC 7692 §7.1.2.1: an accepted server_max_window_bits is echoed with the same or a smaller
    # value, and the server's back-references then reach no further than 2**bits bytes.
    message = compressible(MIB).encode()
    with WebSocketConnection.open(
        server.host, server.port, extensions="permessage-deflate; server_max_window_bits=10"
    ) as connection:
        agreed = (connection.response.header(b"sec-websocket-extensions") or b"").decode()
        connection.send_frame(Opcode.BINARY, message)
        frames = [connection.expect_frame(10)]
        while not frames[-1].fin:
            frames.append(connection.expect_frame(10))
    window = re.search(r"server_max_window_bits=(\d+)", agreed)
    assert window is not None, agreed
    assert 8 <= int(window[1]) <= 10
    assert frames[0].rsv1
    compressed = b"".join(frame.payload for frame in frames)
    inflater = zlib.decompressobj(wbits=-max(9, int(window[1])))
    assert inflater.decompress(compressed + b"\x00\x00\xff\xff") == message


def test_no_per_message_deflate_turns_it_off() -> None:
    with running_server("--no-ws-per-message-deflate") as server:
        with connect(ws_url(server, "/ws/echo"), open_timeout=10) as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            ws.send(compressible(1000))
            echoed = ws.recv(timeout=5)
        assert server.stop() == 0, server.output
    assert extensions is None
    assert echoed == compressible(1000)


# -- app errors ------------------------------------------------------------------------------------


def test_an_app_error_is_a_500_before_accept_and_a_1011_after() -> None:
    # A server of its own: the app's tracebacks are expected in this log.
    with running_server(app=APP) as server:
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(server, "/fail?when=before"), open_timeout=10)
        with (
            connect(ws_url(server, "/fail?when=after"), open_timeout=10) as ws,
            pytest.raises(ConnectionClosed) as closed,
        ):
            ws.recv(timeout=5)
        assert server.stop() == 0, server.output
    assert refused.value.response.status_code == 500
    assert closed.value.rcvd is not None, "TCP closed without a Close frame"
    assert closed.value.rcvd.code == 1011


# -- TLS -------------------------------------------------------------------------------------------


def test_wss_echo(tls_files: TLSFiles) -> None:
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    with running_server(
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile), app=APP
    ) as server:
        assert server.scheme == "https"
        with connect(ws_url(server, "/scope"), ssl=context, open_timeout=10) as ws:
            scope = json.loads(ws.recv(timeout=5))
            ws.send("over tls")
            echoed = ws.recv(timeout=5)
        assert server.stop() == 0, server.output
    assert scope["scheme"] == "wss"
    assert echoed == "over tls"


# -- limits and misbehaving peers ------------------------------------------------------------------


def send_oversized(connection: WebSocketConnection, framing: str) -> int:
    """Write OVERSIZED_TOTAL bytes of one binary message; the bytes written before the server
    closed or stopped reading."""
    key = os.urandom(4)
    # CHUNK is a multiple of 4, so every chunk masks the same way wherever it falls in the payload.
    masked = mask(b"\x5a" * CHUNK, key)
    chunks = OVERSIZED_TOTAL // CHUNK
    sent = 0
    try:
        if framing == "one frame":
            connection.send(frame_header(Opcode.BINARY, OVERSIZED_TOTAL, mask_key=key))
            for _ in range(chunks):
                connection.send(masked)
                sent += CHUNK
        else:
            for index in range(chunks):
                opcode = Opcode.BINARY if index == 0 else Opcode.CONTINUATION
                last = index == chunks - 1
                connection.send(frame_header(opcode, CHUNK, fin=last, mask_key=key) + masked)
                sent += CHUNK
    except (OSError, TimeoutError):
        pass  # the server closed the connection or stopped reading: both keep its memory flat
    return sent


@pytest.mark.parametrize("framing", ["one frame", "64 KiB fragments"])
def test_a_message_over_the_size_limit_gets_1009_and_memory_stays_flat(framing: str) -> None:
    marker = new_marker()
    with running_server("--ws-max-message-size", str(SMALL_MAX_MESSAGE), app=APP) as server:
        with (
            PeakRss(server) as rss,
            WebSocketConnection.open(server.host, server.port, f"/record/{marker}") as connection,
        ):
            sent: list[int] = []
            sender = threading.Thread(
                target=lambda: sent.append(send_oversized(connection, framing))
            )
            sender.start()
            try:
                before, close = connection.read_until_close(timeout=10)
            finally:
                sender.join(30)
        assert not sender.is_alive(), "the client could not finish writing"
        print(
            f"\noversized ({framing}): RSS +{rss.growth / MIB:.1f} MiB, {sent[0] / MIB:.0f} MiB in"
        )
        assert before == []
        assert close.close_code == 1009
        assert rss.growth < RSS_GROWTH_LIMIT, (
            f"RSS grew {rss.growth / MIB:.1f} MiB while {sent[0] / MIB:.0f} MiB were written"
        )
        server.wait_for_line(rf"record {marker}: disconnect 1009\b", timeout=5)
        assert server.stop() == 0, server.output


def deflated(zeros: int) -> bytes:
    """`zeros` zero bytes as one permessage-deflate payload (RFC 7692 §7.2.1): ~1000x smaller."""
    compressor = zlib.compressobj(wbits=-15)
    parts = [compressor.compress(bytes(MIB)) for _ in range(zeros // MIB)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    # §7.2.1: the sender removes the 0x00 0x00 0xff 0xff that ends a sync flush.
    return b"".join(parts)[:-4]


def test_a_compressed_message_that_inflates_past_the_limit_gets_1009() -> None:
    # A deflate bomb: 256 KiB on the wire, 256 MiB inflated. The limit applies to the inflated
    # message, and the server must stop inflating there, not inflate the frame and then measure.
    marker = new_marker()
    bomb = deflated(256 * MIB)
    with running_server("--ws-max-message-size", str(SMALL_MAX_MESSAGE), app=APP) as server:
        with (
            PeakRss(server) as rss,
            WebSocketConnection.open(
                server.host, server.port, f"/record/{marker}", extensions="permessage-deflate"
            ) as connection,
        ):
            agreed = connection.response.header(b"sec-websocket-extensions") or b""
            connection.send_frame(Opcode.BINARY, bomb, rsv1=True)
            before, close = connection.read_until_close(timeout=10)
        assert b"permessage-deflate" in agreed
        print(f"\ndeflate bomb (256 MiB inflated): RSS +{rss.growth / MIB:.1f} MiB")
        assert before == []
        assert close.close_code == 1009
        assert rss.growth < RSS_GROWTH_LIMIT, f"RSS grew {rss.growth / MIB:.1f} MiB"
        server.wait_for_line(rf"record {marker}: disconnect 1009\b", timeout=5)
        assert server.stop() == 0, server.output


def test_a_stalled_reader_holds_the_app_back_then_gets_everything(
    apps_server: ServerProcess,
) -> None:
    marker = new_marker()
    path = f"/flood/{marker}?count={FLOOD_COUNT}&size={FLOOD_SIZE}"
    sent_line = rf"flood {marker}: sent {FLOOD_COUNT}$"
    with (
        PeakRss(apps_server) as rss,
        WebSocketConnection.open(
            apps_server.host, apps_server.port, path, timeout=30
        ) as connection,
    ):
        # The stall: the client reads nothing while the app keeps sending 125 MiB, which cannot
        # all fit in socket buffers: the app's `send` must be held back the whole time.
        with pytest.raises(TimeoutError):
            apps_server.wait_for_line(sent_line, timeout=STALL_SECONDS)
        stalled_growth = rss.growth
        mismatched = []
        for index in range(FLOOD_COUNT):
            opcode, payload = connection.read_message()
            if opcode != Opcode.BINARY or payload != flood_message(index, FLOOD_SIZE):
                mismatched.append(index)
        _, close = connection.read_until_close()
    apps_server.wait_for_line(sent_line, timeout=5)
    print(f"\nstalled reader, HTTP/1.1: RSS +{stalled_growth / MIB:.1f} MiB while stalled")
    assert mismatched == []
    assert close.close_code == 1000
    assert stalled_growth < RSS_GROWTH_LIMIT, f"RSS grew {stalled_growth / MIB:.1f} MiB"


def test_an_app_that_does_not_read_holds_the_client_back(apps_server: ServerProcess) -> None:
    # Inbound backpressure: while the app reads nothing, what the client sends stays in the
    # socket buffers (TCP pushes back), not in the server's memory.
    marker = new_marker()
    count = OVERSIZED_TOTAL // CHUNK
    message = b"\xa5" * CHUNK
    with connect(
        ws_url(apps_server, f"/idle/{marker}?seconds={STALL_SECONDS}"),
        open_timeout=10,
        compression=None,
    ) as ws:
        sender = threading.Thread(target=lambda: [ws.send(message) for _ in range(count)])
        with PeakRss(apps_server) as rss:
            sender.start()
            apps_server.wait_for_line(rf"idle {marker}: reading$", timeout=STALL_SECONDS + 5)
        sender.join(20)
        assert not sender.is_alive(), "the client could not send everything once the app read"
    apps_server.wait_for_line(
        rf"idle {marker}: received {count} messages, {count * CHUNK} bytes$", timeout=10
    )
    assert rss.growth < RSS_GROWTH_LIMIT, f"RSS grew {rss.growth / MIB:.1f} MiB"


@pytest.mark.parametrize("ending", ["FIN", "RST"])
def test_send_raises_once_the_client_is_gone(apps_server: ServerProcess, ending: str) -> None:
    # ASGI 2.4 ("Disconnected Client - send exception"): `send` on a closed connection raises an
    # OSError. The app floods in a loop with no other await, starting on the client's one message;
    # the client leaves right after sending it. If the app's `send` neither raises nor waits, the
    # loop never yields to the event loop, so the connection's loss is never processed: an endless
    # sender would hold the whole worker.
    marker = new_marker()
    path = f"/flood/{marker}?count={FLOOD_COUNT}&size={FLOOD_SIZE}&trigger"
    with WebSocketConnection.open(apps_server.host, apps_server.port, path) as connection:
        connection.send_frame(Opcode.TEXT, b"go")
        lost = time.monotonic()
        if ending == "RST":
            connection.abort()
        else:
            connection.close()
    ended = apps_server.wait_for_line(rf"flood {marker}: (send raised \w+|sent \d+)$", timeout=10)
    elapsed = time.monotonic() - lost
    assert ended[1].startswith("send raised"), f"the app's sends were dropped silently: {ended[0]}"
    assert elapsed < PROMPTLY, f"the app's send raised {elapsed:.2f}s after the client left"


@pytest.mark.parametrize("ending", ["FIN", "RST"])
def test_abrupt_tcp_loss_reaches_the_app_promptly(apps_server: ServerProcess, ending: str) -> None:
    marker = new_marker()
    with WebSocketConnection.open(
        apps_server.host, apps_server.port, f"/record/{marker}"
    ) as connection:
        connection.send_frame(Opcode.TEXT, b"hello")
        assert connection.read_message() == (Opcode.TEXT, b"hello")
        lost = time.monotonic()
        if ending == "RST":
            connection.abort()
        else:
            connection.close()
    match = apps_server.wait_for_line(rf"record {marker}: disconnect (\d+)", timeout=5)
    elapsed = time.monotonic() - lost
    assert match[1] == "1006"
    assert elapsed < PROMPTLY, f"the app heard {elapsed:.2f}s after the connection was lost"


def test_sigterm_closes_websockets_with_1001_then_exits_0() -> None:
    # Two clients: one answers the Close (the library), one never does (a raw socket), which
    # must not keep the server from exiting.
    with (
        running_server("--graceful-timeout", "1") as server,
        WebSocketConnection.open(server.host, server.port) as silent,
        connect(ws_url(server, "/ws/echo"), open_timeout=10) as ws,
    ):
        ws.send("before the stop")
        assert ws.recv(timeout=5) == "before the stop"
        stopping = time.monotonic()
        server.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        elapsed = time.monotonic() - stopping
        _, silent_close = silent.read_until_close(timeout=10)
        exit_code = server.process.wait(10)
    assert closed.value.rcvd is not None, "TCP dropped without a Close frame"
    assert closed.value.rcvd.code == 1001
    assert silent_close.close_code == 1001
    assert elapsed < 5, f"Close came {elapsed:.1f}s after SIGTERM with --graceful-timeout 1"
    assert exit_code == 0, server.output


class FrameCounter(logging.Handler):
    """Counts the frames of one opcode a `websockets` connection received ("< FRAME" lines)."""

    def __init__(self, opcode: WireOpcode) -> None:
        super().__init__(logging.DEBUG)
        self.opcode = opcode
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "< %s" and getattr(record.args[0], "opcode", None) == self.opcode:
            self.count += 1


def test_ping_timeout_closes_a_silent_peer_and_spares_one_that_answers() -> None:
    args = ("--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.3")
    with running_server(*args, app=APP) as server:
        with WebSocketConnection.open(
            server.host, server.port, f"/record/{new_marker()}"
        ) as silent:
            opened = time.monotonic()
            before, close = silent.read_until_close(timeout=5)
            elapsed = time.monotonic() - opened
        assert Opcode.PING in [frame.opcode for frame in before], before
        assert close.close_code == 1011
        assert elapsed < 1.5, f"closed {elapsed:.2f}s after opening (interval 0.3 + timeout 0.3)"

        pings = FrameCounter(WireOpcode.PING)
        logger = logging.getLogger(f"websockets.test.{new_marker()}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(pings)
        url = ws_url(server, f"/record/{new_marker()}")
        with connect(url, open_timeout=10, ping_interval=None, logger=logger) as ws:
            # The library answers each Ping with a Pong by itself; after several rounds of
            # interval + timeout the connection must still be open.
            wait_until(lambda: pings.count >= 4, timeout=5, what="four Pings from the server")
            ws.send("still here")
            assert ws.recv(timeout=5) == "still here"


def test_an_upgraded_connection_is_counted_once() -> None:
    """A WebSocket (or h2c) takes over an HTTP/1.1 connection: one connection, not two."""
    with running_server() as server:
        with connect(ws_url(server, "/ws/echo"), open_timeout=10) as ws:
            ws.send("one")
            assert ws.recv(timeout=5) == "one"
        assert server.stop() == 0
    served = re.search(r"stopped after (\d+) requests on (\d+) connections", server.output)
    assert served is not None, server.output
    assert (int(served[1]), int(served[2])) == (1, 1)
