"""An RFC 8441 client: h2 for the stream, wsproto for the WebSocket frames inside its DATA."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Event

TIMEOUT = 10.0


@dataclass
class H2WebSocketClient:
    """One HTTP/2 connection to host:port and WebSockets opened on its streams."""

    host: str
    port: int
    sock: socket.socket = field(init=False)
    h2: h2.connection.H2Connection = field(init=False)
    events: list[h2.events.Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=TIMEOUT)
        config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False)
        self.h2 = h2.connection.H2Connection(config)
        self.h2.initiate_connection()
        self.flush()
        self.wait(lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in self.events))

    def close(self) -> None:
        self.sock.close()

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def read(self) -> bool:
        """One read's events; False at EOF."""
        data = self.sock.recv(65536)
        if not data:
            return False
        self.events += self.h2.receive_data(data)
        self.flush()
        return True

    def wait(self, condition, timeout: float = TIMEOUT) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not (self.events and condition()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met; events: {self.events[-10:]}")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            if not self.read():
                raise ConnectionError(f"closed; events: {self.events[-10:]}")

    def open(
        self, path: str, protocol: str = "websocket", extra: list[tuple[str, str]] | None = None
    ) -> tuple[int, int, dict[bytes, bytes]]:
        """Extended CONNECT; returns the stream id, the response status and its fields."""
        stream_id = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "CONNECT"),
            (":protocol", protocol),
            (":scheme", "http"),
            (":path", path),
            (":authority", f"{self.host}:{self.port}"),
            ("sec-websocket-version", "13"),
            *(extra or []),
        ]
        self.h2.send_headers(stream_id, headers)
        self.flush()
        self.wait(lambda: self._response(stream_id) is not None)
        response = self._response(stream_id)
        assert response is not None
        fields = dict(response.headers)
        return stream_id, int(fields[b":status"]), fields

    def _response(self, stream_id: int) -> h2.events.ResponseReceived | None:
        return next(
            (
                e
                for e in self.events
                if isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream_id
            ),
            None,
        )

    def websocket(self, stream_id: int) -> StreamWebSocket:
        return StreamWebSocket(self, stream_id)


@dataclass
class StreamWebSocket:
    """wsproto framing over one stream of an H2WebSocketClient."""

    client: H2WebSocketClient
    stream_id: int
    ws: Connection = field(default_factory=lambda: Connection(ConnectionType.CLIENT))
    _seen: int = 0
    _pending: list[Event] = field(default_factory=list)

    def send(self, event: Event, end_stream: bool = False) -> None:
        """The event's frame bytes in DATA frames of the allowed size (within the window)."""
        data = self.ws.send(event)
        size = self.client.h2.max_outbound_frame_size
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            self.client.h2.send_data(self.stream_id, chunk, end_stream=end_stream and last)
        self.client.flush()

    def next_event(self, timeout: float = TIMEOUT) -> Event:
        """The next WebSocket event from the server (DATA on this stream, acknowledged)."""

        def arrived() -> bool:
            for event in self.client.events[self._seen :]:
                self._seen += 1
                if isinstance(event, h2.events.DataReceived) and event.stream_id == self.stream_id:
                    self.ws.receive_data(event.data)
                    self.client.h2.acknowledge_received_data(
                        event.flow_controlled_length, self.stream_id
                    )
                    self._pending.extend(self.ws.events())
            self.client.flush()  # the window updates, or the server waits for them
            return bool(self._pending)

        if not self._pending:
            self.client.wait(arrived, timeout)
        return self._pending.pop(0)

    def ended(self) -> bool:
        return any(
            isinstance(e, h2.events.StreamEnded | h2.events.StreamReset)
            and e.stream_id == self.stream_id
            for e in self.client.events
        )
