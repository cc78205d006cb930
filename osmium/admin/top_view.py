"""What `osmium top` shows, drawn from the admin API's answers: a header, the totals, the workers,
the busiest connections (one selected), recent events and the keys. Pure: no I/O, no clock.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

#: The orders `s` cycles through; each puts the largest value first.
SORT_KEYS = ("streams_open", "bytes_out", "age", "idle")
#: Events remembered (the newest EVENT_ROWS are shown).
EVENTS_KEPT = 200
EVENT_ROWS = 8
#: Lines that a narrow terminal cuts rather than wraps, so that the line count holds.
_ONE_LINE: dict[str, Any] = {"no_wrap": True, "overflow": "ellipsis"}


@dataclass
class TopState:
    """The last answers of the admin API and the operator's choices."""

    address: str
    server: dict[str, Any] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)
    #: In the order shown: by `sort_key`, largest first.
    connections: list[dict[str, Any]] = field(default_factory=list)
    unanswered: list[int] = field(default_factory=list)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    last_event: int | None = None
    sort_key: str = SORT_KEYS[0]
    selected: str | None = None
    #: The outcome of the last action, and why the last refresh failed (the data is then stale).
    action_status: str = ""
    fetch_error: str = ""

    def sort_connections(self) -> None:
        self.connections.sort(key=lambda connection: connection["id"])
        self.connections.sort(key=lambda connection: connection[self.sort_key], reverse=True)
        ids = [connection["id"] for connection in self.connections]
        if self.selected not in ids:
            self.selected = ids[0] if ids else None

    def selected_index(self) -> int:
        ids = [connection["id"] for connection in self.connections]
        return ids.index(self.selected) if self.selected in ids else 0

    def move_selection(self, step: int) -> None:
        if self.connections:
            index = min(max(self.selected_index() + step, 0), len(self.connections) - 1)
            self.selected = self.connections[index]["id"]


def render(top: TopState, height: int) -> RenderableType:
    """The whole screen for a terminal `height` lines tall; connections get the room left."""
    workers = _workers(top)
    events = _events(top, min(len(top.events), EVENT_ROWS, max(height // 6, 1)))
    # Lines besides the connection rows: header, totals, the workers' title and heading and
    # rows, the connections' title and heading, the events' title and rows, the keys, 3 blanks.
    used = 2 + 2 + len(top.workers) + 2 + 1 + events.row_count + 1 + 3
    connections = _connections(top, max(height - used, 1))
    return Group(
        _header(top),
        _totals(top),
        Text(),
        workers,
        Text(),
        connections,
        Text(),
        events,
        _footer(top),
    )


def _header(top: TopState) -> Text:
    server = top.server
    header = Text.assemble(
        ("osmium top", "bold"),
        f"  {top.address}  server {server.get('version', '?')} pid {server.get('pid', '?')}",
        f"  serving {server.get('url', '?')}  {server.get('slots', '?')} slots",
        **_ONE_LINE,
    )
    respawns = {cause: count for cause, count in server.get("respawns", {}).items() if count}
    if respawns:
        causes = ", ".join(f"{cause} {count}" for cause, count in respawns.items())
        header.append(f"  respawns: {causes}", "yellow")
    if server.get("reloads"):
        header.append(f"  reloads {server['reloads']}")
    return header


def _totals(top: TopState) -> Text:
    totals = top.totals
    p50, p99 = milliseconds(totals.get("p50_ms")), milliseconds(totals.get("p99_ms"))
    return Text.assemble(
        ("total", "bold"),
        f"  requests {totals.get('requests', 0)}  req/s {totals.get('rps', 0.0):.1f}",
        f"  p50/p99 {p50}/{p99} ms",
        f"  connections {totals.get('connections', 0)}  streams {totals.get('streams', 0)}",
        f"  up {duration(top.server.get('uptime', 0.0))}",
        **_ONE_LINE,
    )


def _table(title: str) -> Table:
    return Table(
        title=title, title_justify="left", title_style="bold", box=None, pad_edge=False,
        header_style="bold cyan",
    )  # fmt: skip


def _workers(top: TopState) -> Table:
    table = _table(f"workers: {len(top.workers)}")
    for name in ("pid", "slot", "state", "req/s", "conns", "streams", "cpu %", "rss", "p99 ms"):
        table.add_column(name, justify="left" if name == "state" else "right", no_wrap=True)
    for worker in top.workers:
        state = worker["state"]
        table.add_row(
            str(worker["pid"]),
            str(worker["slot"]),
            Text(state, "green" if state == "ready" else "yellow"),
            f"{worker['rps']:.1f}",
            str(worker["connections"]),
            str(worker["streams"]),
            f"{worker['cpu_percent']:.1f}",
            size(worker["rss_bytes"]),
            milliseconds(worker["latency"].get("p99_ms")),
        )
    return table


_CONNECTION_COLUMNS = (
    ("id", "id"), ("worker", "worker"), ("peer", "peer"), ("proto", "protocol"), ("age", "age"),
    ("idle", "idle"), ("reqs", "requests"), ("streams", "streams_open"), ("in", "bytes_in"),
    ("out", "bytes_out"), ("queued", "output_queued"), ("rtt ms", "ping_rtt_ms"),
)  # fmt: skip
_LEFT = {"id", "peer", "protocol"}


def _connections(top: TopState, rows: int) -> Table:
    title = f"connections: {len(top.connections)}, busiest by {top.sort_key}"
    if top.unanswered:
        title += f"  (workers not answering: {', '.join(map(str, top.unanswered))})"
    table = _table(title)
    for heading, key in _CONNECTION_COLUMNS:
        marked = f"{heading}▼" if key == top.sort_key else heading
        table.add_column(marked, justify="left" if key in _LEFT else "right", no_wrap=True)
    # Scroll just enough to keep the selected connection on screen.
    first = max(top.selected_index() - rows + 1, 0)
    for connection in top.connections[first : first + rows]:
        table.add_row(
            connection["id"],
            str(connection["worker"]),
            connection["peer"],
            connection["protocol"],
            duration(connection["age"]),
            duration(connection["idle"]),
            str(connection["requests"]),
            str(connection["streams_open"]),
            size(connection["bytes_in"]),
            size(connection["bytes_out"]),
            size(connection["output_queued"]),
            milliseconds(connection["ping_rtt_ms"], digits=2),
            style="reverse" if connection["id"] == top.selected else None,
        )
    return table


def _events(top: TopState, rows: int) -> Table:
    table = _table("events")
    table.show_header = False
    table.add_column("time", no_wrap=True)
    table.add_column("kind", no_wrap=True, style="magenta")
    table.add_column("message", no_wrap=True)
    for event in list(reversed(top.events))[:rows]:
        clock = time.strftime("%H:%M:%S", time.localtime(event["t"]))
        table.add_row(clock, event["kind"], event["message"])
    return table


def _footer(top: TopState) -> Text:
    """What went wrong or what the last action did, first (a narrow terminal cuts the end)."""
    footer = Text(**_ONE_LINE)
    if top.fetch_error:
        footer.append(f"stale: {top.fetch_error}  ", "bold red")
    if top.action_status:
        footer.append(f"{top.action_status}  ")
    keys = f"s sort ({top.sort_key})  ↑↓/jk select  c close (graceful)  p ping  q quit"
    return footer.append(keys, "dim")


def milliseconds(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


_UNITS = "BKMG"


def size(count: int) -> str:
    """Bytes as a person reads them: 999B, 12.3K, 45.6M, 7.8G (powers of 1024)."""
    exponent = 0
    while count >= 1000 * 1024**exponent and exponent < len(_UNITS) - 1:
        exponent += 1
    return f"{count}B" if exponent == 0 else f"{count / 1024**exponent:.1f}{_UNITS[exponent]}"


def duration(seconds: float) -> str:
    """12.3s, 4m05s, 2h03m, 3d04h: two units at most, the largest first."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, second = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{second:02d}s"
    hours, minute = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minute:02d}m"
    days, hour = divmod(hours, 24)
    return f"{days}d{hour:02d}h"
