"""`osmium.admin.top_view`: the screen fills the terminal exactly (the keys line stays on the last
line), the selected connection stays in view, and numbers read the way a person reads them."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from osmium.admin.top_view import EVENTS_KEPT, TopState, duration, render, size

WIDTH, HEIGHT = 160, 50


def connection(number: int) -> dict[str, Any]:
    return {
        "id": f"0-100-{number}", "worker": 100, "slot": 0, "peer": f"127.0.0.1:{50000 + number}",
        "protocol": "h2c", "tls": None, "age": 10.0 + number, "idle": 1.0, "requests": number,
        "streams_open": number % 7, "bytes_in": 100 * number, "bytes_out": 1000 * number,
        "windows": None, "output_queued": 0, "ping_rtt_ms": None,
    }  # fmt: skip


def worker(pid: int, slot: int) -> dict[str, Any]:
    return {
        "pid": pid, "slot": slot, "state": "ready", "rps": 12.5, "connections": 50, "streams": 3,
        "cpu_percent": 4.0, "rss_bytes": 30 << 20, "latency": {"p50_ms": 1.0, "p99_ms": None},
    }  # fmt: skip


def busy_top() -> TopState:
    """More connections and events than a screen holds."""
    top = TopState(
        address="http://127.0.0.1:9100",
        server={"pid": 99, "version": "0.1.0", "url": "http://127.0.0.1:8000", "slots": 2,
                "uptime": 75.0, "respawns": {"crash": 1}},
        totals={"requests": 1234, "rps": 25.0, "connections": 100, "streams": 300,
                "p50_ms": 1.0, "p99_ms": 9.5},
        workers=[worker(100, 0), worker(101, 1)],
        connections=[connection(number) for number in range(100)],
    )  # fmt: skip
    top.events.extend(
        {"seq": seq, "t": 0.0, "kind": "defence", "message": f"event {seq}"}
        for seq in range(EVENTS_KEPT)
    )
    top.sort_connections()
    return top


def screen(top: TopState, height: int = HEIGHT) -> list[str]:
    output = io.StringIO()
    console = Console(file=output, width=WIDTH, height=height, color_system=None)
    console.print(render(top, height))
    return output.getvalue().splitlines()


def test_the_screen_fills_the_terminal_with_the_keys_last() -> None:
    for height in (50, 30, 24):
        lines = screen(busy_top(), height)
        assert len(lines) == height, "\n".join(lines)
        assert "q quit" in lines[-1]


def test_newest_events_first() -> None:
    lines = screen(busy_top())
    newest = next(index for index, line in enumerate(lines) if f"event {EVENTS_KEPT - 1}" in line)
    assert f"event {EVENTS_KEPT - 2}" in lines[newest + 1]


def test_the_selected_connection_stays_in_view() -> None:
    top = busy_top()
    top.move_selection(len(top.connections))  # past the end: clamped to the last
    last = top.connections[-1]["id"]
    assert top.selected == last
    assert any(line.startswith(f"{last} ") for line in screen(top))
    top.move_selection(-len(top.connections))
    assert top.selected == top.connections[0]["id"]


def test_sorting_keeps_the_selection_and_puts_the_largest_first() -> None:
    top = busy_top()
    top.move_selection(5)
    selected = top.selected
    top.sort_key = "bytes_out"
    top.sort_connections()
    assert top.selected == selected
    values = [connection["bytes_out"] for connection in top.connections]
    assert values == sorted(values, reverse=True)


def test_stale_data_is_marked_on_the_keys_line() -> None:
    top = busy_top()
    top.fetch_error = "cannot reach the admin API at http://127.0.0.1:9100: connection refused"
    assert screen(top)[-1].startswith(f"stale: {top.fetch_error}")


def test_sizes_and_durations() -> None:
    assert [size(n) for n in (0, 999, 1000, 1536, 5 << 20, 3 << 30, 5000 << 30)] == [
        "0B", "999B", "1.0K", "1.5K", "5.0M", "3.0G", "5000.0G",
    ]  # fmt: skip
    assert [duration(s) for s in (0.25, 59.9, 60, 3599, 3600, 86400 + 7200)] == [
        "0.2s", "59.9s", "1m00s", "59m59s", "1h00m", "1d02h",
    ]  # fmt: skip
