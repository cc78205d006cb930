"""Fixtures for the conformance suite: one server per module, one fresh connection per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conformance.frames import RawClient
from tests.conformance.servers import client_context, conformance_server
from tests.server_process import ServerProcess

Connect = Callable[..., RawClient]


@pytest.fixture
def connect(request: pytest.FixtureRequest) -> Iterator[Connect]:
    """`connect(server=None, settings=None, handshake=True)`: a RawClient, closed after the test.

    Without `server`, it connects to this module's `server` fixture.
    """
    clients: list[RawClient] = []

    def _connect(
        server: ServerProcess | None = None,
        *,
        settings: dict[int, int] | None = None,
        handshake: bool = True,
    ) -> RawClient:
        target = server if server is not None else request.getfixturevalue("server")
        tls = client_context() if target.scheme == "https" else None
        client = RawClient(target.host, target.port, tls=tls)
        clients.append(client)
        if handshake:
            client.handshake(settings)
        return client

    yield _connect
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """The demo app, over TLS when the suite runs with OSMIUM_CONFORMANCE_TLS."""
    with conformance_server() as process:
        yield process


@pytest.fixture
def h2(connect: Connect, server: ServerProcess) -> RawClient:
    """A connection to the module's server with the preface and SETTINGS exchanged."""
    return connect(server)


@pytest.fixture(autouse=True)
def _server_survives(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test sends, the server process must stay up and log no traceback.

    Applies to every fixture named `*server`; a test that stops its server on purpose names the
    fixture otherwise.
    """
    names = [name for name in request.fixturenames if name.endswith("server")]
    servers: list[ServerProcess] = [request.getfixturevalue(name) for name in names]
    seen = [len(server.lines) for server in servers]
    yield
    for server, start in zip(servers, seen, strict=True):
        assert server.process.poll() is None, f"server exited; output:\n{server.output}"
        new_output = "".join(server.lines[start:])
        assert "Traceback" not in new_output, f"server logged an exception:\n{new_output}"
