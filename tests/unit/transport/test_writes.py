"""How a connection's output is grouped into writes (each write is a syscall and a segment)."""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
from hyperframe.frame import HeadersFrame, SettingsFrame

from osmium.demo import app
from osmium.protocol.settings import ProtocolSettings
from osmium.transport.context import ServerContext
from osmium.transport.negotiate import ProtocolNegotiator
from tests.support.h2_peer import GET, frames_in
from tests.support.transports import HeldBytesTransport

DEADLINE = 2.0


def test_a_new_connections_preface_and_first_response_leave_in_one_write() -> None:
    """A client that sends its preface and a request at once gets the server preface, the
    SETTINGS ACK and the response in one write, not the preface alone first."""

    async def scenario() -> list[bytes]:
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        client.send_headers(1, GET, end_stream=True)
        context = ServerContext(app=app, protocol=ProtocolSettings(), keep_alive_timeout=20.0)
        negotiator = ProtocolNegotiator(context)
        transport = HeldBytesTransport(negotiator)
        negotiator.connection_made(transport)
        negotiator.data_received(client.data_to_send())
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while not any(isinstance(f, HeadersFrame) for f in frames_in(b"".join(transport.writes))):
            assert asyncio.get_running_loop().time() < deadline, "no response"
            await asyncio.sleep(0)
        return transport.writes

    writes = asyncio.run(scenario())
    assert len(writes) == 1
    frames = frames_in(writes[0])
    assert isinstance(frames[0], SettingsFrame) and "ACK" not in frames[0].flags
    assert any(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in frames)
    assert any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in frames)
