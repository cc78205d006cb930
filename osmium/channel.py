"""The acceptor <-> worker channels: JSON lines over two pipes per worker.

Reports go up (worker -> acceptor), commands of the admin plane go down (acceptor -> worker,
`{"type": "command", "id": N, "op": ...}`, answered by a `reply` report with the same id).
Every worker owns the write end of its report pipe; the acceptor reads all of them. Reports:

- ``{"type": "ready", "pid": P}`` — lifespan startup done, the worker is accepting.
- ``{"type": "stats", "pid": P, "requests": .., "connections": .., "connections_total": ..,
  "streams": .., "bytes_received": .., "bytes_sent": .., "app_errors": ..,
  "protocol_errors": .., "connections_dropped": .., "timeouts": ..}`` — cumulative counters
  (open connections/streams are current values),
  sent every heartbeat interval; it doubles as the heartbeat.
- ``{"type": "retiring", "pid": P, "reason": R}`` — the worker stops accepting and drains
  (max-requests recycling), so the acceptor starts its replacement now.
- ``{"type": "fatal", "pid": P, "exit_code": C, "message": M}`` — start-up failed for a reason a
  restart cannot fix (the app does not import, lifespan startup failed): stop the server.
- ``{"type": "reply", "id": N, ...}`` — the answer to command N (admin plane).
- ``{"type": "event", "kind": K, ...}`` — something for the admin plane's event log.

Writes never block a worker's event loop: the pipes are non-blocking (see ReportWriter).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

READ_SIZE = 256 * 1024
#: The most a worker keeps of replies the pipe has not taken yet (a snapshot of many connections).
MAX_OUTBOX = 64 * 1024 * 1024


@dataclass(slots=True)
class Counters:
    """What a worker counts; cumulative except `connections` and `streams` (open right now)."""

    requests: int = 0
    connections: int = 0
    connections_total: int = 0
    streams: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    app_errors: int = 0
    protocol_errors: int = 0
    #: Connections closed because their peer left output unread (send_timeout, worker budget).
    connections_dropped: int = 0
    #: Connections closed for a handshake or request header section that came too slowly.
    timeouts: int = 0
    #: GOAWAY and RST_STREAM error codes we sent for a peer's error, by name.
    errors: dict[str, int] = field(default_factory=dict)
    #: Connections closed by a budget (rate limits, header block size), by the budget's name.
    defences: dict[str, int] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The counters by name; not dataclasses.asdict, which deep-copies every value and cost
        ~160,000 instructions a report (once a second in every worker)."""
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


class ReportWriter:
    """The worker's end: messages to the acceptor that never block the worker.

    A small report that does not fit in the pipe is dropped (the next one carries the same
    cumulative counters); a reply to a command (`reply`), which may be large, is kept in an
    outbox and written as the pipe drains, and reports wait behind it so that lines never mix.
    """

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._outbox = bytearray()
        self._watching = False

    def send(self, message_type: str, /, **fields: Any) -> bool:
        line = json.dumps({"type": message_type, "pid": os.getpid(), **fields}).encode() + b"\n"
        if self._outbox:
            return False
        try:
            return os.write(self._fd, line) == len(line)
        except (BlockingIOError, BrokenPipeError):
            return False

    def send_stats(self, counters: Counters, **extra: Any) -> bool:
        return self.send("stats", **counters.fields(), **extra)

    def reply(self, command_id: int, **fields: Any) -> None:
        """Answer command `command_id`, however long the answer (up to MAX_OUTBOX)."""
        line = json.dumps({"type": "reply", "id": command_id, **fields}).encode() + b"\n"
        if len(self._outbox) + len(line) > MAX_OUTBOX:
            line = json.dumps({"type": "reply", "id": command_id, "error": "reply too large"})
            line = line.encode() + b"\n"
        self._outbox += line
        self._write_outbox()

    def _write_outbox(self) -> None:
        try:
            written = os.write(self._fd, self._outbox)
        except BlockingIOError:
            written = 0
        except BrokenPipeError:
            written = len(self._outbox)
        del self._outbox[:written]
        loop = asyncio.get_running_loop()
        if self._outbox and not self._watching:
            self._watching = True
            loop.add_writer(self._fd, self._write_outbox)
        elif not self._outbox and self._watching:
            self._watching = False
            loop.remove_writer(self._fd)

    def close(self) -> None:
        os.close(self._fd)


class ReportReader:
    """The acceptor's end for one worker: bytes in, whole messages out."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._buffer = bytearray()

    def read(self) -> list[dict[str, Any]]:
        """The whole messages available now."""
        with contextlib.suppress(BlockingIOError):
            self._buffer += os.read(self.fd, READ_SIZE)
        return _messages(self._buffer)

    def close(self) -> None:
        os.close(self.fd)


def _messages(buffer: bytearray) -> list[dict[str, Any]]:
    """The whole JSON lines at the front of `buffer`, taken out of it; a line longer than
    MAX_OUTBOX without its end is dropped."""
    end = buffer.rfind(b"\n")
    if end < 0:
        if len(buffer) > MAX_OUTBOX:
            buffer.clear()
        return []
    lines = bytes(buffer[:end]).split(b"\n")
    del buffer[: end + 1]
    messages = []
    for line in lines:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and "type" in message:
            messages.append(message)
    return messages


class CommandWriter:
    """The acceptor's end of one worker's command pipe; a command that does not fit is
    not sent (the worker is then reported as not answering)."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd

    def send(self, command_id: int, op: str, **fields: Any) -> bool:
        line = json.dumps({"type": "command", "id": command_id, "op": op, **fields}).encode()
        try:
            return os.write(self.fd, line + b"\n") == len(line) + 1
        except (BlockingIOError, BrokenPipeError):
            return False

    def close(self) -> None:
        os.close(self.fd)


class CommandReader:
    """The worker's end of its command pipe, read from its event loop."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._buffer = bytearray()

    def read(self) -> list[dict[str, Any]] | None:
        """The whole commands available now; None once the acceptor closed its end."""
        try:
            chunk = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self._buffer += chunk
        return _messages(self._buffer)

    def close(self) -> None:
        os.close(self.fd)
