"""A client h2 connection wired to the sans-IO core through byte strings: no sockets."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.settings
from hyperframe.frame import Frame

from osmium.protocol.h2 import ServerConnection
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings

GET = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "test")]
POST = [(":method", "POST"), (":path", "/echo"), (":scheme", "http"), (":authority", "test")]


class Peer:
    """A client connection wired to a ServerConnection through plain byte strings."""

    def __init__(
        self,
        settings: ProtocolSettings | None = None,
        *,
        initial_window_size: int | None = None,
        heed_server_settings: bool = True,
        limits: Limits | None = None,
        keep_alive_timeout: float | None = None,
    ) -> None:
        self.server = ServerConnection(
            settings or ProtocolSettings(), limits=limits, keep_alive_timeout=keep_alive_timeout
        )
        config = h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
        )
        self.client = h2.connection.H2Connection(config)
        if initial_window_size is not None:
            self.client.local_settings = h2.settings.Settings(
                client=True,
                initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window_size},
            )
        self.client.initiate_connection()
        self.server.start()
        server_preface = self.server.data_to_send()
        # A client that never saw our SETTINGS may exceed our limits: that is what some tests need.
        self.client_events = (
            self.client.receive_data(server_preface) if heed_server_settings else []
        )
        self.server_events = self.client_to_server()

    def client_to_server(self) -> list:
        return self.server.receive(self.client.data_to_send())

    def server_to_client(self) -> list:
        return self.client.receive_data(self.server.data_to_send())

    def request(self, headers: list, body: bytes = b"", end: bool = True) -> int:
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, headers, end_stream=end and not body)
        if body:
            self.client.send_data(stream_id, body, end_stream=end)
        return stream_id


def frames_in(data: bytes) -> list[Frame]:
    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames
