"""One server per attack test, with short timeouts so slow-peer defences act within seconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conformance.frames import RawClient
from tests.server_process import ServerProcess, running_server

KEEP_ALIVE = 2.0
#: --handshake-timeout, --header-timeout and --send-timeout of the attacked server.
DEADLINE = 2.0
SERVER_ARGS = (
    "--keep-alive-timeout", str(KEEP_ALIVE),
    "--handshake-timeout", str(DEADLINE),
    "--header-timeout", str(DEADLINE),
    "--send-timeout", str(DEADLINE),
)  # fmt: skip


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with running_server(*SERVER_ARGS) as process:
        yield process


@pytest.fixture
def attacker(server: ServerProcess) -> Iterator[Callable[[], RawClient]]:
    """`attacker()`: a RawClient with the handshake done, closed after the test."""
    clients: list[RawClient] = []

    def connect() -> RawClient:
        client = RawClient(server.host, server.port)
        clients.append(client)
        client.handshake()
        return client

    yield connect
    for client in clients:
        client.close()
