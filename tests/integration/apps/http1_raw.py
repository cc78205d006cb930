"""A raw HTTP/1.1 client on a plain socket, for what httpx and curl normalise or refuse to send.

The HTTP/1.1, h2c-upgrade and smuggling tests write exact bytes and read the server's answer
byte for byte: every read has a deadline, and `TimeoutError` says what had arrived by then.
Not an app: it lives under apps/ as the one shared module those three test files may add.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 10.0
Fields = list[tuple[bytes, bytes]]


@dataclass
class RawResponse:
    """One response as it came off the wire (field names lowercased, values as sent)."""

    version: bytes
    status: int
    reason: bytes
    headers: Fields
    body: bytes = b""
    trailers: Fields = field(default_factory=list)
    chunked: bool = False
    #: 1xx responses that came before this one (100 Continue...).
    interim: list[RawResponse] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        values = [value for key, value in self.headers if key == name]
        return b", ".join(values) if values else None

    def tokens(self, name: bytes) -> set[bytes]:
        """A comma-separated field's tokens, lowercased (Connection, Upgrade...)."""
        value = self.header(name) or b""
        return {token.strip().lower() for token in value.split(b",") if token.strip()}


class RawConnection:
    """One HTTP/1.1 connection: write bytes, read responses with deadlines."""

    def __init__(self, sock: socket.socket, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False

    @classmethod
    def open(cls, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> RawConnection:
        return cls(socket.create_connection((host, port), timeout=timeout), timeout)

    @classmethod
    def open_tls(
        cls, host: str, port: int, context: ssl.SSLContext, timeout: float = DEFAULT_TIMEOUT
    ) -> RawConnection:
        raw = socket.create_connection((host, port), timeout=timeout)
        return cls(context.wrap_socket(raw, server_hostname=host), timeout)

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    # -- writing ---------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def send_tolerant(self, data: bytes) -> bool:
        """Send, but a server that already closed (it refused what came first) is no error."""
        try:
            self.send(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    # -- reading ---------------------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _recv(self, deadline: float, what: str) -> bool:
        """Read more into the buffer; False at end of stream (a reset counts as one)."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out waiting for {what}; buffered: {self._seen()}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(256 * 1024)
        except TimeoutError:  # socket.timeout is TimeoutError since 3.10
            raise TimeoutError(f"timed out waiting for {what}; buffered: {self._seen()}") from None
        except (ConnectionResetError, ssl.SSLEOFError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _seen(self) -> str:
        return repr(bytes(self.buffer[:600]))

    def _line(self, deadline: float) -> bytes:
        while (index := self.buffer.find(b"\r\n")) < 0:
            if not self._recv(deadline, "a CRLF-terminated line"):
                raise ConnectionError(f"connection closed before a full line; got {self._seen()}")
        line = bytes(self.buffer[:index])
        del self.buffer[: index + 2]
        return line

    def _exactly(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            if not self._recv(deadline, f"{size} body bytes"):
                raise ConnectionError(
                    f"connection closed after {len(self.buffer)} of {size} body bytes"
                )
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _fields(self, deadline: float) -> Fields:
        fields: Fields = []
        while line := self._line(deadline):
            name, separator, value = line.partition(b":")
            assert separator, f"response field line without a colon: {line!r}"
            fields.append((name.lower(), value.strip(b" \t")))
        return fields

    def read_head(self, timeout: float | None = None) -> RawResponse:
        """The next status line and header block (a 1xx too), without any body."""
        deadline = self._deadline(timeout)
        line = self._line(deadline)
        parts = line.split(b" ", 2)
        assert len(parts) >= 2 and parts[0].startswith(b"HTTP/"), f"not a status line: {line!r}"
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) == 3 else b""
        return RawResponse(version, status, reason, self._fields(deadline))

    def read_response(self, method: bytes = b"GET", timeout: float | None = None) -> RawResponse:
        """The next final response with its body (1xx before it go into `interim`)."""
        deadline = self._deadline(timeout)
        interim: list[RawResponse] = []
        while True:
            response = self.read_head(deadline - time.monotonic())
            if response.status >= 200 or response.status == 101:
                break
            interim.append(response)
        response.interim = interim
        if method == b"HEAD" or response.status in (101, 204, 304):
            return response
        if b"chunked" in response.tokens(b"transfer-encoding"):
            response.chunked = True
            response.body, response.trailers = self._chunked_body(deadline)
        elif (length := response.header(b"content-length")) is not None:
            response.body = self._exactly(int(length), deadline)
        else:
            response.body = self.read_to_eof(deadline - time.monotonic())
        return response

    def _chunked_body(self, deadline: float) -> tuple[bytes, Fields]:
        body = bytearray()
        while True:
            size_line = self._line(deadline)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                return bytes(body), self._fields(deadline)
            body += self._exactly(size, deadline)
            crlf = self._exactly(2, deadline)
            assert crlf == b"\r\n", f"chunk data not followed by CRLF: {crlf!r}"

    def read_to_eof(self, timeout: float | None = None) -> bytes:
        """Everything until the server closes; `TimeoutError` if it keeps the connection open."""
        deadline = self._deadline(timeout)
        while self._recv(deadline, "the server to close the connection"):
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def take_buffer(self) -> bytes:
        """Bytes read past the last response (after a 101, the start of the HTTP/2 stream)."""
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def request_bytes(
    method: str,
    target: str,
    host: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
) -> bytes:
    """A well-formed HTTP/1.1 request; a body gets a Content-Length."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def assert_serving(host: str, port: int, output: str = "") -> None:
    """A fresh connection gets 200 hello world from the demo app's GET /."""
    with RawConnection.open(host, port) as connection:
        connection.send(request_bytes("GET", "/", f"{host}:{port}", [("Connection", "close")]))
        response = connection.read_response()
    assert (response.status, response.body) == (200, b"hello world"), output[-3000:]
