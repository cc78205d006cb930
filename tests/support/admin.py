"""A server with its admin plane on, and a client for the admin API, for the admin tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.server_process import ServerProcess, running_server

TOKEN = "test-admin-token"
ADMIN_LINE = r"admin: (?P<url>http://[^/\s]+|unix:\S+)(/#token=(?P<token>\S+))?"


@dataclass
class AdminServer:
    """The server and its admin API (`api`: an httpx client with the token)."""

    server: ServerProcess
    admin_url: str
    api: httpx.Client

    def state(self) -> dict[str, Any]:
        return self.get("/api/state")

    def get(self, path: str, **params: Any) -> Any:
        response = self.api.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, **params: Any) -> httpx.Response:
        return self.api.post(path, params=params)

    def connections(self, **params: Any) -> list[dict[str, Any]]:
        return self.get("/api/connections", **params)["connections"]

    def connection_ids(self, **params: Any) -> set[str]:
        return {connection["id"] for connection in self.connections(**params)}

    def worker_pids(self) -> list[int]:
        """The serving workers (the acceptor's other child is the admin process)."""
        return [worker["pid"] for worker in self.state()["workers"]]


@contextmanager
def admin_server(
    *args: str, token: str | None = TOKEN, app: str | None = None
) -> Iterator[AdminServer]:
    """`osmium serve --admin-bind 127.0.0.1:0 [--admin-token TOKEN] *args`, ready to query."""
    token_args = ("--admin-token", token) if token else ()
    with running_server("--admin-bind", "127.0.0.1:0", *token_args, *args, app=app) as server:
        match = server.wait_for_line(ADMIN_LINE)
        token = match["token"] or token
        headers = {"authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=match["url"], headers=headers, timeout=10.0) as api:
            yield AdminServer(server, match["url"], api)
