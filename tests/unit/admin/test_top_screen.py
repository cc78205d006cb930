"""`osmium.admin.top_screen`: key presses as a terminal sends them, and what each key does.

An escape sequence is dropped whole: a terminal's answer such as `ESC [ ? 1 ; 2 c` must not be
read as `c`, which closes a connection.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from osmium.admin.client import AdminClient, parse_address
from osmium.admin.top_screen import act, decode_keys
from osmium.admin.top_view import SORT_KEYS, TopState


@pytest.fixture
def refused_client() -> Iterator[AdminClient]:
    """A client of an address nothing listens on (bound, so nothing else takes it meanwhile)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        client = AdminClient(parse_address(f"http://127.0.0.1:{silent.getsockname()[1]}"), "T")
        yield client
        client.close()


def connections(count: int) -> TopState:
    top = TopState(address="http://127.0.0.1:9100")
    top.connections = [
        {"id": f"0-1-{n}", "streams_open": n, "bytes_out": -n, "age": 0.0, "idle": 0.0}
        for n in range(count)
    ]
    top.sort_connections()
    return top


def test_keys_and_arrows() -> None:
    assert decode_keys(b"j\x1b[Ak\x1bOBq") == ["j", "up", "k", "down", "q"]


def test_other_escape_sequences_are_dropped_whole() -> None:
    assert decode_keys(b"\x1b[?1;2c\x1b[1;5A\x1b[15~\x1bOPs") == ["s"]


def test_s_cycles_the_sort_keys(refused_client: AdminClient) -> None:
    top = connections(3)
    seen = []
    for _ in SORT_KEYS:
        seen.append(top.sort_key)
        assert act(refused_client, top, "s") is False
    assert seen == list(SORT_KEYS)
    assert top.sort_key == SORT_KEYS[0]


def test_selection_moves_within_the_list(refused_client: AdminClient) -> None:
    top = connections(3)  # by streams_open: 0-1-2, 0-1-1, 0-1-0
    assert top.selected == "0-1-2"
    for key, expected in (("k", "0-1-2"), ("j", "0-1-1"), ("down", "0-1-0"), ("j", "0-1-0"),
                          ("up", "0-1-1")):  # fmt: skip
        act(refused_client, top, key)
        assert top.selected == expected, key


def test_an_action_without_a_connection_says_so(refused_client: AdminClient) -> None:
    top = connections(0)
    assert act(refused_client, top, "c") is False
    assert top.action_status == "no connection to act on"


def test_a_failed_action_is_reported_not_raised(refused_client: AdminClient) -> None:
    top = connections(1)
    assert act(refused_client, top, "c") is True
    assert top.action_status.startswith("close 0-1-0: cannot reach the admin API at ")
    assert "connection refused" in top.action_status
