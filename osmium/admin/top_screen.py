"""The running `osmium top`: poll the admin API every interval, redraw, and answer keys between
refreshes (the terminal in cbreak mode, always restored); actions are the API's POSTs.
"""

from __future__ import annotations

import os
import re
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from rich.console import Console
from rich.live import Live

from osmium.admin.client import AdminClient, AdminError, parse_address
from osmium.admin.top_view import SORT_KEYS, TopState, render
from osmium.cli import EXIT_CONFIG

#: One key press as the terminal sends it: a CSI or SS3 escape sequence (arrows), or one byte.
_KEY = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1bO.|.", re.DOTALL)
_KEY_NAMES = {b"\x1b[A": "up", b"\x1bOA": "up", b"\x1b[B": "down", b"\x1bOB": "down"}


def watch(admin: str, token: str | None, interval: float) -> int:
    """Show the admin API at `admin` until `q` or Ctrl-C; one line and exit 2 if it cannot."""
    try:
        address = parse_address(admin)
    except ValueError as error:
        return _fail(str(error))
    client = AdminClient(address, token)
    try:
        return _watch(client, TopState(address=admin), interval)
    finally:
        client.close()


def _watch(client: AdminClient, top: TopState, interval: float) -> int:
    try:
        # Once before the screen opens, so a wrong address or token is a plain one-line error.
        refresh(client, top)
    except AdminError as error:
        return _fail(str(error))
    if not sys.stdin.isatty():
        return _fail("needs a terminal: stdin is not a tty")
    console = Console()
    try:
        with (
            cbreak(sys.stdin.fileno()),
            Live(console=console, screen=True, auto_refresh=False) as live,
        ):
            _run(client, top, interval, live, console)
    except KeyboardInterrupt:
        pass  # Ctrl-C is a way to quit; the context managers above restored the terminal
    return 0


def _fail(message: str) -> int:
    print(f"osmium top: {message}", file=sys.stderr)
    return EXIT_CONFIG


@contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """Keys arrive one by one without echo (Ctrl-C still interrupts); the old mode comes back."""
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _run(client: AdminClient, top: TopState, interval: float, live: Live, console: Console) -> None:
    fd = sys.stdin.fileno()
    next_refresh = time.monotonic() + interval
    while True:
        live.update(render(top, console.size.height), refresh=True)
        # Wait for a key, but never past the refresh deadline.
        ready, _, _ = select.select([fd], [], [], max(next_refresh - time.monotonic(), 0.0))
        if ready:
            typed = os.read(fd, 1024)
            if not typed:
                return  # the terminal is gone: nobody is watching
            for key in decode_keys(typed):
                if key == "q":
                    return
                if act(client, top, key):
                    next_refresh = time.monotonic()  # show what the action changed at once
        if time.monotonic() >= next_refresh:
            try:
                refresh(client, top)
                top.fetch_error = ""
            except AdminError as error:
                top.fetch_error = str(error)  # keep the last data on screen, marked stale
            next_refresh = time.monotonic() + interval


def decode_keys(data: bytes) -> list[str]:
    """Key names in what one read returned: "up", "down", or the character; other sequences
    (function keys, terminal answers) are dropped whole so that their letters are not taken
    for commands."""
    keys = []
    for match in _KEY.finditer(data):
        sequence = match.group()
        if sequence in _KEY_NAMES:
            keys.append(_KEY_NAMES[sequence])
        elif len(sequence) == 1 and sequence != b"\x1b":
            keys.append(sequence.decode("latin-1"))
    return keys


def act(client: AdminClient, top: TopState, key: str) -> bool:
    """Do what `key` asks; True when it changed the server (so a refresh is due)."""
    if key == "s":
        top.sort_key = SORT_KEYS[(SORT_KEYS.index(top.sort_key) + 1) % len(SORT_KEYS)]
        top.sort_connections()
    elif key in ("up", "k"):
        top.move_selection(-1)
    elif key in ("down", "j"):
        top.move_selection(1)
    elif key in ("c", "p"):
        if top.selected is None:
            top.action_status = "no connection to act on"
            return False
        top.action_status = _act_on(client, top.selected, key)
        return True
    return False


def _act_on(client: AdminClient, connection: str, key: str) -> str:
    """Close (`c`, gracefully) or ping (`p`) a connection; what came of it, in a few words."""
    path = f"/api/connections/{quote(connection, safe='')}"
    try:
        if key == "c":
            client.post(f"{path}/close?mode=graceful")
            return f"closing {connection} (GOAWAY, its streams finish)"
        answer = client.post(f"{path}/ping")
        return f"ping {connection}: {answer['rtt_ms']:.2f} ms"
    except AdminError as error:
        return f"{'close' if key == 'c' else 'ping'} {connection}: {error}"


def refresh(client: AdminClient, top: TopState) -> None:
    """Read the state, the connections and the events that are new since the last refresh."""
    state = client.get("/api/state")
    listing = client.get("/api/connections")
    since = "" if top.last_event is None else f"?since={top.last_event}"
    events = client.get(f"/api/events{since}")
    top.server, top.totals, top.workers = state["server"], state["totals"], state["workers"]
    top.connections = listing["connections"]
    top.unanswered = listing["unanswered"]
    top.sort_connections()
    if top.last_event is not None and events["next"] < top.last_event:
        # The numbering went back: another server answers at this address now; read all anew.
        top.events.clear()
        top.last_event = None
        return
    top.events.extend(events["events"])
    if top.events:
        top.last_event = top.events[-1]["seq"]
