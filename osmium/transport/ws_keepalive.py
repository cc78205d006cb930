"""WebSocket keep-alive (RFC 6455 §5.5.2): a Ping every `interval` seconds of the WebSocket's
life; no Pong within `timeout` and the WebSocket is closed 1011. One for each carrier: an upgraded
HTTP/1.1 connection and an RFC 8441 stream (whose connection's own PING says nothing about
whether the app at the other end of that one stream still answers)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


class KeepAlive:
    """Timers only: `send_ping(payload)` says False when the WebSocket can no longer ping."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float,
        timeout: float,
        send_ping: Callable[[bytes], bool],
        on_timeout: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._interval = interval
        self._timeout = timeout
        self._send_ping = send_ping
        self._on_timeout = on_timeout
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._interval:
            self._ping_timer = self._loop.call_later(self._interval, self._ping)

    def pong(self) -> None:
        """A Pong arrived: the next Ping after another interval."""
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
            self.start()

    def stop(self) -> None:
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = None

    def _ping(self) -> None:
        self._ping_timer = None
        if self._send_ping(os.urandom(4)):
            self._pong_timer = self._loop.call_later(self._timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._pong_timer = None
        self._on_timeout()
