"""A small blocking client of the admin API, for `osmium top`: JSON over one kept-alive HTTP/1.1
connection to `http://HOST:PORT` or `unix:/path.sock`; every failure is an AdminError of one line.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

UNIX_PREFIX = "unix:"
REQUEST_TIMEOUT = 5.0
TOKEN_HINT = "wrong or missing token (--token or OSMIUM_ADMIN_TOKEN)"
SERVER_HINT = "is the server running with --admin-bind?"
_CLOSED_MEANWHILE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class AdminError(Exception):
    """The admin API could not answer; the message is one line a person can act on."""


@dataclass(frozen=True)
class AdminAddress:
    """Where the admin API listens: a TCP host and port, or a unix socket path."""

    text: str
    host: str = ""
    port: int = 0
    socket_path: str = ""


def parse_address(text: str) -> AdminAddress:
    """`http://HOST:PORT` or `unix:/path.sock`; ValueError with a one-line reason otherwise."""
    if text.startswith(UNIX_PREFIX):
        path = text.removeprefix(UNIX_PREFIX)
        if not path:
            raise ValueError(f"--admin {text!r}: a unix socket needs a path (unix:/path.sock)")
        return AdminAddress(text, socket_path=path)
    url = urlsplit(text)
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme != "http" or not url.hostname or port is None or url.path not in ("", "/"):
        raise ValueError(f"--admin {text!r}: expected http://HOST:PORT or unix:/path.sock")
    return AdminAddress(text, host=url.hostname, port=port)


class _UnixConnection(http.client.HTTPConnection):
    """http.client over a unix stream socket (the admin API's other listener)."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class AdminClient:
    """GET and POST to the admin API with the bearer token; answers are decoded JSON objects."""

    def __init__(
        self, address: AdminAddress, token: str | None, timeout: float = REQUEST_TIMEOUT
    ) -> None:
        self.address = address
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        if address.socket_path:
            self._connection: http.client.HTTPConnection = _UnixConnection(
                address.socket_path, timeout
            )
        else:
            self._connection = http.client.HTTPConnection(
                address.host, address.port, timeout=timeout
            )

    def get(self, path: str) -> dict[str, Any]:
        return self._request("GET", path)

    def post(self, path: str) -> dict[str, Any]:
        return self._request("POST", path)

    def close(self) -> None:
        self._connection.close()

    def _request(self, method: str, path: str) -> dict[str, Any]:
        retried = False
        while True:
            try:
                self._connection.request(method, path, headers=self._headers)
                response = self._connection.getresponse()
                return self._decode(method, path, response.status, response.read())
            except (OSError, http.client.HTTPException) as error:
                self._connection.close()
                # The server may close a kept-alive connection between two refreshes; every call
                # here is safe to repeat (reads, a ping, a graceful close): once more, afresh.
                if isinstance(error, _CLOSED_MEANWHILE) and not retried:
                    retried = True
                    continue
                raise AdminError(self._unreachable(error)) from None

    def _unreachable(self, error: BaseException) -> str:
        where = f"cannot reach the admin API at {self.address.text}"
        if isinstance(error, ConnectionRefusedError):
            return f"{where}: connection refused ({SERVER_HINT})"
        if isinstance(error, FileNotFoundError):
            return f"{where}: no such socket ({SERVER_HINT})"
        if isinstance(error, TimeoutError):
            return f"{where}: no answer within {self._connection.timeout:g} s"
        if isinstance(error, socket.gaierror):
            return f"{where}: unknown host {self.address.host!r}"
        if isinstance(error, OSError) and error.strerror:
            return f"{where}: {error.strerror.lower()}"
        return f"{where}: {type(error).__name__} {error}".rstrip()

    def _decode(self, method: str, path: str, status: int, body: bytes) -> dict[str, Any]:
        where = f"the admin API at {self.address.text}"
        if status == HTTPStatus.UNAUTHORIZED:
            raise AdminError(f"{where} answered 401: {TOKEN_HINT}")
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise AdminError(f"{where} answered {method} {path} with {status} and no JSON object")
        if status >= 400:
            reason = answer.get("error", "no reason given")
            raise AdminError(f"{where} answered {method} {path} with {status}: {reason}")
        return answer
