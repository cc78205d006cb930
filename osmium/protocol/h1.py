"""One server-side HTTP/1.1 connection, sans-IO, on h11: bytes in -> events out, calls -> bytes out.

It speaks the same event vocabulary as the HTTP/2 core (one request at a time, numbered), refuses
malformed or ambiguous requests (h11's checks against request smuggling) with a 4xx and a close,
and can accept an upgrade (h2c, websocket) by answering 101 and handing the rest of the bytes over.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

import h11

from osmium.protocol.events import (
    Body,
    ConnectionFailed,
    EndBody,
    Event,
    Headers,
    Request,
    field_value,
)

#: Largest request line plus header block h11 buffers before answering 431.
MAX_HEADER_BYTES = 64 * 1024

#: Request-line versions an HTTP/1.1 connection serves.
SERVED_VERSIONS = (b"1.1", b"1.0")


def _ambiguous_length(headers: list[tuple[bytes, bytes]]) -> bool:
    """RFC 9112 §6.3: both framings at once is the classic smuggling set-up; h11 would pick one."""
    names = {bytes(name) for name, _ in headers}
    return b"content-length" in names and b"transfer-encoding" in names


def _tokens(value: bytes | None) -> set[bytes]:
    return {token.strip().lower() for token in (value or b"").split(b",")}


def h2c_upgrade_settings(headers: Headers, scheme: str) -> bytes | None:
    """The HTTP2-Settings value when this cleartext request asks for h2c (RFC 7540 §3.2)."""
    if scheme != "http" or _tokens(field_value(headers, b"upgrade")) != {b"h2c"}:
        return None
    if not {b"upgrade", b"http2-settings"} <= _tokens(field_value(headers, b"connection")):
        return None
    settings = [value for name, value in headers if name == b"http2-settings"]
    # RFC 7540 §3.2.1: exactly one HTTP2-Settings field, or no upgrade.
    return settings[0] if len(settings) == 1 else None


#: The 101 response's fields for an accepted h2c upgrade.
H2C_SWITCH: Headers = [(b"connection", b"Upgrade"), (b"upgrade", b"h2c")]


def _as_given(headers: Headers) -> Headers:
    return headers


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class H1Connection:
    """The protocol state of one HTTP/1.1 connection, fed by a transport that owns the socket."""

    def __init__(
        self,
        scheme: str,
        max_header_bytes: int = MAX_HEADER_BYTES,
        server_fields: Callable[[Headers], Headers] = _as_given,
    ) -> None:
        """`server_fields`: a response's fields plus the server's own (date, server, defaults)
        that they lack, for the answers this core makes itself: refusals and 101s."""
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self._server_fields = server_fields
        self._scheme = scheme.encode()
        self._output = bytearray()
        self.request_id = 0
        self.failed = False
        self._chunked = False
        self._method = b""

    # -- input -----------------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes from the socket; returns the events they complete, in order."""
        if self.failed:
            return []
        self._h11.receive_data(data)
        return self._pull()

    def _pull(self) -> list[Event]:
        events: list[Event] = []
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                events.append(self._reject(error))
                return events
            kind = type(event)
            if kind is h11.Request:
                self._method = bytes(event.method)
                if _ambiguous_length(event.headers):
                    events.append(self._refuse(400, "both Content-Length and Transfer-Encoding"))
                    return events
                if event.http_version not in SERVED_VERSIONS:
                    # "PRI * HTTP/2.0" (an HTTP/2 preface sent to --http 1), "GET / HTTP/2.0":
                    # h11 parses any one-digit version (RFC 9110 §15.6.6).
                    events.append(self._refuse(505, "only HTTP/1.0 and HTTP/1.1 are served"))
                    return events
                if self._method == b"CONNECT":
                    # A 2xx would turn the connection into a tunnel, which an origin server
                    # serving ASGI apps does not offer (RFC 9110 §9.3.6).
                    events.append(self._refuse(501, "CONNECT is not supported"))
                    return events
                self.request_id += 1
                events.append(Request(self.request_id, self._request_headers(event)))
            elif kind is h11.Data:
                events.append(Body(self.request_id, bytes(event.data), len(event.data)))
            elif kind is h11.EndOfMessage:
                events.append(EndBody(self.request_id, list(event.headers)))
            else:  # NEED_DATA, PAUSED (a pipelined request waits for our response), closed
                return events

    def _request_headers(self, request: h11.Request) -> Headers:
        """The request as HTTP/2-style pseudo-headers plus fields, as the ASGI layer expects."""
        return [
            (b":method", bytes(request.method)),
            (b":path", bytes(request.target)),
            (b":scheme", self._scheme),
            *((bytes(name), bytes(value)) for name, value in request.headers),
        ]

    def _reject(self, error: h11.RemoteProtocolError) -> ConnectionFailed:
        status = error.error_status_hint
        if status == 501:
            # h11 answers any coding but plain chunked with 501; when chunked is not the final
            # coding RFC 9112 §6.3 requires 400, and either way the length is unknowable.
            status = 400
        return self._refuse(status, str(error))

    def _refuse(self, status: int, reason: str) -> ConnectionFailed:
        """Answer a refused request (400, 431, 501...) if we still can, then give up."""
        self.failed = True
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = _reason(status)
            headers = self._server_fields(
                [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
            )
            self._output += self._h11.send(self._response(status, headers))
            if self._method != b"HEAD":  # a response to HEAD has no body (RFC 9110 §9.3.2)
                self._output += self._h11.send(h11.Data(data=body))
            self._output += self._h11.send(h11.EndOfMessage())
        return ConnectionFailed(status, reason)

    # -- output ----------------------------------------------------------------------------------

    def send_continue(self) -> None:
        """100 Continue, for a client that waits for it before sending the body."""
        if self._h11.client_is_waiting_for_100_continue:
            self._output += self._h11.send(h11.InformationalResponse(status_code=100, headers=[]))

    def send_informational(self, status: int, headers: Headers) -> None:
        """A 1xx response ahead of the final one, such as 103 Early Hints (RFC 8297).

        Not to an HTTP/1.0 client, which would take it for the final response (RFC 9110 §15.2),
        and not once the final response has started.
        """
        if self._h11.their_http_version == b"1.1" and self._h11.our_state is h11.SEND_RESPONSE:
            response = h11.InformationalResponse(
                status_code=status, headers=headers, reason=_reason(status)
            )
            self._output += self._h11.send(response)

    def start_response(self, status: int, headers: Headers, close: bool = False) -> None:
        if close:
            headers = [*headers, (b"connection", b"close")]
        # h11 frames a body without content-length as chunked for HTTP/1.1 clients.
        has_length = any(name.lower() == b"content-length" for name, _ in headers)
        self._chunked = not has_length and self._h11.their_http_version == b"1.1"
        self._output += self._h11.send(self._response(status, headers))

    def reject(self, status: int, headers: Headers, body: bytes) -> None:
        """Answer the request in progress for the server (413, 503) with `Connection: close`:
        whatever the client sends after it, the rest of the body included, is ignored."""
        self.failed = True
        self.start_response(status, headers, close=True)
        if self._method != b"HEAD":
            self.send_data(body)
        self.end_response()

    def send_data(self, data: bytes) -> None:
        if data:
            self._output += self._h11.send(h11.Data(data=data))

    def end_response(self, trailers: Headers | None = None) -> None:
        """The response is complete; trailers go out only with a chunked body (h11's rule)."""
        if trailers and not self._chunked:
            trailers = None
        self._output += self._h11.send(h11.EndOfMessage(headers=trailers or []))

    @property
    def http_version(self) -> str:
        """The current request's version, "1.1" or "1.0", as the ASGI scope gives it."""
        return "1.0" if self._h11.their_http_version == b"1.0" else "1.1"

    @property
    def request_complete(self) -> bool:
        return self._h11.their_state in (h11.DONE, h11.MIGHT_SWITCH_PROTOCOL)

    @property
    def response_started(self) -> bool:
        return self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE)

    def next_request(self) -> list[Event] | None:
        """After a finished exchange: the next request's events (pipelined bytes first).

        None when the connection cannot carry another request and must be closed; no events
        after `reject`: the transport closes the connection once the client has had its answer.
        """
        if self.failed:
            return []
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.SEND_BODY:
            # The app answered without reading the whole body: skip the rest of it.
            return None
        if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
            return None
        self._h11.start_next_cycle()
        self._method = b""
        return self._pull()

    def accept_upgrade(self, headers: Headers) -> bytes:
        """101 Switching Protocols with `headers` (h2c, websocket) and the server's fields;
        returns the bytes the client sent after its request."""
        response = h11.InformationalResponse(status_code=101, headers=self._server_fields(headers))
        self._output += self._h11.send(response)
        trailing, _closed = self._h11.trailing_data
        return bytes(trailing)

    @staticmethod
    def _response(status: int, headers: Headers) -> h11.Response:
        return h11.Response(status_code=status, headers=headers, reason=_reason(status))

    def data_to_send(self) -> bytes:
        data = bytes(self._output)
        self._output.clear()
        return data
