"""The worker's end of the admin plane: it answers the acceptor's commands (snapshot, close,
ping, reset, drain) from its live connections, and adds its own numbers to each stats report."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from osmium.admin.stats import RequestStats
from osmium.channel import CommandReader, ReportWriter
from osmium.transport.context import ServerContext

log = logging.getLogger("osmium.admin")

#: Events one worker tells the acceptor per second at most.
MAX_EVENTS_PER_SECOND = 10
#: Connections one snapshot lists at most, unless the command asks for fewer.
MAX_CONNECTIONS_LISTED = 10_000
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_usage() -> tuple[float, int]:
    """This process's CPU seconds (user + system) and resident memory in bytes."""
    times = os.times()
    try:
        with open("/proc/self/statm", "rb") as statm:
            rss = int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, where no /proc
    return times.user + times.system, rss


class WorkerAdmin:
    """Answers commands read from `command_fd` through `reports`; `on_drain` retires the worker."""

    def __init__(
        self,
        context: ServerContext,
        reports: ReportWriter,
        command_fd: int,
        slot: int,
        on_drain: Callable[[], None],
    ) -> None:
        self._context = context
        self._reports = reports
        self._commands = CommandReader(command_fd)
        self._slot = slot
        self._on_drain = on_drain
        self._pid = os.getpid()
        self._started_at = time.time()
        self._stats = context.request_stats = RequestStats()
        context.on_event = self._event
        self._event_second = 0
        self._events_this_second = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self._commands.fd, self._on_commands)

    def stop(self) -> None:
        asyncio.get_running_loop().remove_reader(self._commands.fd)
        self._commands.close()

    def report_fields(self) -> dict[str, Any]:
        """What this worker adds to its stats report while the admin plane is on."""
        cpu_seconds, rss = process_usage()
        return {
            "slot": self._slot,
            "started_at": self._started_at,
            "cpu_seconds": cpu_seconds,
            "rss_bytes": rss,
            **self._stats.report(),
        }

    # -- commands --------------------------------------------------------------------------------

    def _on_commands(self) -> None:
        commands = self._commands.read()
        if commands is None:  # the acceptor is gone; its heartbeat check stops this worker
            asyncio.get_running_loop().remove_reader(self._commands.fd)
            return
        for command in commands:
            command_id = command.get("id", 0)
            try:
                answer = self._execute(command)
            except (KeyError, TypeError, ValueError) as error:
                answer = {"error": f"bad command: {error}"}
            if answer is not None:
                self._reports.reply(command_id, **answer)

    def _execute(self, command: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to `command`, or None when a task answers later (ping)."""
        op = command["op"]
        if op == "snapshot":
            return {"connections": self._snapshot(command)}
        if op == "drain":
            self._on_drain()
            return {"ok": True}
        connection = self._find(int(command["connection"]))
        if connection is None:
            return {"error": "no such connection", "status": 404}
        if op == "connection":
            now = time.monotonic()
            streams = connection.stream_snapshots(now)
            return {"connection": {**self._view(connection, now), "streams": streams}}
        if op == "close":
            connection.close_by_operator(graceful=command.get("mode", "graceful") != "now")
            return {"ok": True}
        if op == "reset":
            reset = getattr(connection, "reset_by_operator", None)
            if reset is None:
                return {"error": "HTTP/1.1 has no streams to reset", "status": 409}
            if not reset(int(command["stream"])):
                return {"error": "no such stream", "status": 404}
            return {"ok": True}
        if op == "ping":
            if not hasattr(connection, "ping"):
                return {"error": "HTTP/1.1 has no PING", "status": 409}
            task = asyncio.get_running_loop().create_task(self._ping(command["id"], connection))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return None
        return {"error": f"unknown command {op!r}", "status": 400}

    async def _ping(self, command_id: int, connection: Any) -> None:
        rtt = await connection.ping()
        if rtt is None:
            self._reports.reply(command_id, error="no PING ACK", status=504)
        else:
            self._reports.reply(command_id, ok=True, rtt_ms=rtt * 1000)

    def _find(self, serial: int) -> Any:
        return next((c for c in self._context.connections if c.tally.serial == serial), None)

    def _snapshot(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        """The connections that pass the command's filters, at most its `limit`."""
        now = time.monotonic()
        limit = min(int(command.get("limit") or MAX_CONNECTIONS_LISTED), MAX_CONNECTIONS_LISTED)
        peer = command.get("peer")
        protocol = command.get("protocol")
        older_than = float(command.get("older_than") or 0)
        idle_for = float(command.get("idle_for") or 0)
        views = []
        for connection in list(self._context.connections):
            view = self._view(connection, now)
            if (
                (peer and peer not in (view["peer"] or ""))
                or (protocol and view["protocol"] != protocol)
                or view["age"] < older_than
                or view["idle"] < idle_for
            ):
                continue
            views.append(view)
            if len(views) >= limit:
                break
        return views

    def _view(self, connection: Any, now: float) -> dict[str, Any]:
        view = connection.snapshot(now)
        return {
            "id": f"{self._slot}-{self._pid}-{connection.tally.serial}",
            "worker": self._pid,
            "slot": self._slot,
            **view,
        }

    # -- events ----------------------------------------------------------------------------------

    def _event(self, kind: str, message: str, what: str, peer: str) -> None:
        """A defence fired or a policy closed a connection: to the acceptor's event log, at most
        MAX_EVENTS_PER_SECOND a second (an attack fires many)."""
        second = int(time.monotonic())
        if second != self._event_second:
            self._event_second, self._events_this_second = second, 0
        self._events_this_second += 1
        if self._events_this_second <= MAX_EVENTS_PER_SECOND:
            self._reports.send("event", kind=kind, message=message, what=what, peer=peer)
