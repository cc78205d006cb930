"""The ASGI adapter on a recording sink: a finished response versus a client that went away.

After a finished response the app's misuse of `send` is a RuntimeError; after the client left,
every `send` raises ClientDisconnected and `receive` says http.disconnect. `run_http` logs an app
that stops because its client left as one INFO line, not as an application error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from osmium.asgi import (
    HTTP1_EXTENSIONS,
    ClientDisconnected,
    HTTPStream,
    Message,
    ResponseFields,
    build_scope,
    run_http,
)
from osmium.protocol.events import Headers

START = {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}
LAST_BODY = {"type": "http.response.body", "body": b"done"}
TRAILERS = {"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]}


class RecordingSink:
    """A connection that takes everything and remembers it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []
        self.acknowledged = 0

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self.sent.append(("headers", end_stream))

    def queue_body(
        self, stream_id: int, data: bytes, end_stream: bool, headers: Headers | None = None
    ) -> bool:
        if headers is not None:
            self.sent.append(("headers", False))
        self.sent.append(("body", data))
        return True

    async def wait_for_room(self, stream_id: int) -> None:
        raise AssertionError("the queue always has room")

    def end_stream(self, stream_id: int) -> None:
        self.sent.append(("end", None))

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self.sent.append(("reset", error_code))

    def acknowledge(self, stream_id: int, size: int) -> None:
        self.acknowledged += size

    def response_fields(self) -> ResponseFields:
        return ResponseFields(lambda: b"Thu, 01 Jan 1970 00:00:00 GMT", [])

    def send_informational(self, stream_id: int, headers: Headers) -> None:
        self.sent.append(("informational", headers))

    def push(self, stream_id: int, request_headers: Headers) -> None:
        self.sent.append(("push", request_headers))


def new_stream(http_version: str = "1.1", stream_id: int = 1) -> tuple[HTTPStream, RecordingSink]:
    headers = [(b":method", b"GET"), (b":path", b"/events?x=1"), (b":authority", b"example")]
    scope = build_scope(headers, "http", None, None, None, http_version)
    sink = RecordingSink()
    return HTTPStream(sink, stream_id, scope), sink


def run(coroutine: Awaitable[object]) -> object:
    async def main() -> object:
        return await coroutine

    return asyncio.run(main())


def test_every_send_after_the_client_left_raises_client_disconnected() -> None:
    async def scenario() -> None:
        streaming, sink = new_stream()
        await streaming.send(START)
        await streaming.send({"type": "http.response.body", "body": b"a", "more_body": True})
        streaming.disconnect()
        with pytest.raises(ClientDisconnected):
            await streaming.send({"type": "http.response.body", "body": b"b", "more_body": True})
        with pytest.raises(ClientDisconnected):
            await streaming.send({"type": "http.response.body", "body": b""})
        assert await streaming.receive() == {"type": "http.disconnect"}
        assert sink.sent == [("headers", False), ("body", b"a")]

        not_started, _ = new_stream()
        not_started.disconnect()
        with pytest.raises(ClientDisconnected):
            await not_started.send(START)

        awaiting_trailers, _ = new_stream()
        await awaiting_trailers.send(START)
        await awaiting_trailers.send(LAST_BODY)
        awaiting_trailers.disconnect()
        with pytest.raises(ClientDisconnected):
            await awaiting_trailers.send(TRAILERS)

    run(scenario())


def test_send_after_a_finished_response_is_the_app_s_error_not_a_disconnect() -> None:
    async def scenario() -> None:
        stream, sink = new_stream()
        await stream.send(START)
        await stream.send(LAST_BODY)
        await stream.send(TRAILERS)
        assert stream.response_finished and not stream.client_gone
        with pytest.raises(RuntimeError, match="after the response body ended"):
            await stream.send(LAST_BODY)
        with pytest.raises(RuntimeError, match="trailers sent twice"):
            await stream.send(TRAILERS)
        assert await stream.receive() == {"type": "http.disconnect"}
        assert sink.sent == [("headers", False), ("body", b"done"), ("headers", True)]

    run(scenario())


def test_unread_body_is_not_delivered_as_empty_after_the_client_left() -> None:
    async def scenario() -> None:
        stream, sink = new_stream()
        stream.feed_body(b"request body", 12)
        stream.feed_end()
        stream.disconnect()
        assert await stream.receive() == {"type": "http.disconnect"}
        assert sink.acknowledged == 12  # the window for the dropped bytes is given back

    run(scenario())


class FrameworkDisconnect(Exception):
    """What a framework raises from our ClientDisconnected (Starlette: ClientDisconnect)."""


def app_that_raises_after_the_client_left(stream: HTTPStream) -> Callable[..., Awaitable[None]]:
    async def app(
        scope: object, receive: object, send: Callable[[Message], Awaitable[None]]
    ) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tick", "more_body": True})
        stream.disconnect()  # the client resets the stream
        try:
            await send({"type": "http.response.body", "body": b"tick", "more_body": True})
        except OSError:
            raise FrameworkDisconnect from None

    return app


@pytest.mark.parametrize(
    ("http_version", "request_line"),
    [("1.1", '"GET /events HTTP/1.1"'), ("2", '"GET /events HTTP/2" stream 3')],
)
def test_app_stopping_after_the_client_left_is_one_info_line(
    caplog: pytest.LogCaptureFixture, http_version: str, request_line: str
) -> None:
    stream, _ = new_stream(http_version, stream_id=3)
    with caplog.at_level(logging.INFO, logger="osmium.error"):
        succeeded = run(run_http(app_that_raises_after_the_client_left(stream), stream))
    assert succeeded is True  # not counted as an app error
    [record] = [record for record in caplog.records if record.name == "osmium.error"]
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert record.getMessage() == f"{request_line}: client went away (FrameworkDisconnect)"


def test_real_app_error_keeps_its_traceback_and_names_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise ValueError("a real bug")

    stream, sink = new_stream()
    with caplog.at_level(logging.INFO, logger="osmium.error"):
        succeeded = run(run_http(app, stream))
    assert succeeded is False
    [record] = [record for record in caplog.records if record.name == "osmium.error"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == '"GET /events HTTP/1.1": exception in ASGI application'
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert sink.sent[0] == ("headers", False)  # the 500


# -- server push and early hints -------------------------------------------------------------------


def test_scope_extensions_by_protocol_each_scope_its_own_table() -> None:
    request = [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"example")]
    http2 = build_scope(request, "https", None, None, None)
    http1 = build_scope(request, "https", None, None, None, "1.1", HTTP1_EXTENSIONS)
    assert set(http2["extensions"]) == {
        "http.response.trailers",
        "http.response.early_hint",
        "http.response.push",
    }
    assert set(http1["extensions"]) == {"http.response.trailers", "http.response.early_hint"}
    http1["extensions"]["x-app"] = {}  # an app that edits its own scope edits only that
    again = build_scope(request, "https", None, None, None, "1.1", HTTP1_EXTENSIONS)
    assert "x-app" not in again["extensions"]


def test_a_repeated_header_list_builds_its_scope_from_what_the_first_left() -> None:
    request = [
        (b":method", b"GET"),
        (b":path", b"/a%20b?q=1"),
        (b":scheme", b"https"),
        (b":authority", b"example"),
        (b"accept", b"*/*"),
    ]
    known: dict = {}
    first = build_scope(request, "https", None, None, None, known=known)
    assert "scope" in known
    first["headers"].append((b"x-added-by-the-app", b"1"))  # its own list, edited
    again = build_scope([(b":method", b"POST")], "https", None, None, None, known=known)
    assert (again["method"], again["path"], again["raw_path"]) == ("GET", "/a b", b"/a%20b")
    assert again["query_string"] == b"q=1"
    assert again["headers"] == [(b"host", b"example"), (b"accept", b"*/*")]
    assert again["headers"] is not first["headers"]


def test_push_promises_a_get_under_the_request_s_scheme_and_authority() -> None:
    async def scenario() -> None:
        stream, sink = new_stream("2")
        await stream.send(
            {
                "type": "http.response.push",
                "path": "/static/café 1.css",
                "headers": [
                    (b"Accept", b"text/css"),
                    (b":path", b"/elsewhere"),  # pseudo-header fields are the server's
                    (b"connection", b"close"),  # as are connection-specific ones
                ],
            }
        )
        assert sink.sent == [
            (
                "push",
                [
                    (b":method", b"GET"),
                    (b":scheme", b"http"),
                    (b":authority", b"example"),
                    (b":path", b"/static/caf%C3%A9%201.css"),
                    (b"accept", b"text/css"),
                ],
            )
        ]
        with pytest.raises(RuntimeError, match="does not start with '/'"):
            await stream.send({"type": "http.response.push", "path": "style.css", "headers": []})
        await stream.send({**START, "trailers": False})
        await stream.send(LAST_BODY)
        # After the response there is no stream to promise on: ignored, as ASGI has it.
        await stream.send({"type": "http.response.push", "path": "/late.css", "headers": []})
        assert [kind for kind, _ in sink.sent] == ["push", "headers", "body"]
        stream.disconnect()
        with pytest.raises(ClientDisconnected):
            await stream.send({"type": "http.response.push", "path": "/x.css", "headers": []})

    run(scenario())


def test_early_hints_carry_one_link_field_per_link_before_the_response() -> None:
    async def scenario() -> None:
        stream, sink = new_stream()
        links = [b"</a.css>; rel=preload; as=style", b"</b.js>; rel=preload; as=script"]
        await stream.send({"type": "http.response.early_hint", "links": links})
        await stream.send({"type": "http.response.early_hint", "links": []})  # nothing to send
        assert sink.sent == [
            ("informational", [(b":status", b"103"), (b"link", links[0]), (b"link", links[1])])
        ]
        await stream.send(START)
        with pytest.raises(RuntimeError, match=r"early_hint sent after http\.response\.start"):
            await stream.send({"type": "http.response.early_hint", "links": links})
        late, _ = new_stream()
        late.disconnect()
        with pytest.raises(ClientDisconnected):
            await late.send({"type": "http.response.early_hint", "links": links})

    run(scenario())
