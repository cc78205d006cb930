"""Stand-ins for asyncio transports, to drive a connection protocol without a socket."""

from __future__ import annotations

import asyncio


class HeldBytesTransport(asyncio.Transport):
    """A socket whose peer takes nothing: written bytes stay buffered until `abort()`."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._protocol = protocol
        self.buffered = 0
        #: What was written, write by write.
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.buffered += len(data)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing or self.aborted

    def close(self) -> None:
        self.closing = True  # a real transport waits for `buffered` to drain: never, here

    def abort(self) -> None:
        self.aborted = True
        self.buffered = 0
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)
