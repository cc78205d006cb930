"""The pieces behind --server-header, --header, --max-request-body-size and --limit-concurrency:
parsing and checking the settings, the fields a response gets, their HPACK encoding, and the
worker's count of requests in flight."""

from __future__ import annotations

import asyncio

import h2.events
import pytest
from hpack import Decoder

from osmium.admission import ConcurrencyLimit
from osmium.asgi import HTTPStream, ResponseFields, build_scope
from osmium.config import ConfigError, build_config
from osmium.protocol.events import Headers
from osmium.protocol.h2 import ConstantFieldsEncoder
from osmium.protocol.settings import ProtocolSettings
from osmium.transport.context import ServerContext
from tests.support.h2_peer import GET, Peer

DATE = b"Thu, 01 Jan 1970 00:00:00 GMT"
DEFAULTS = [(b"server", b"osmium"), (b"x-frame-options", b"DENY")]


# -- settings --------------------------------------------------------------------------------------


def test_header_entries_become_lower_case_names_and_trimmed_values() -> None:
    config = build_config({"headers": ["X-Frame-Options:  DENY ", "x-empty:", "Server:edge"]})
    assert config.headers == (("x-frame-options", "DENY"), ("x-empty", ""), ("server", "edge"))
    assert build_config({}).headers == ()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["no-colon"], "expected NAME:VALUE"),
        ([": value"], "the name is empty"),
        (["x(y): 1"], "not a field name"),
        (["x-a: caf\u00e9"], "visible ASCII"),
        (["x-a: line\r\nx-b: injected"], "visible ASCII"),
        (["TE: trailers"], "connection-specific"),
        (["proxy-connection: close"], "connection-specific"),
        (["Content-Length: 0"], "set by each response"),
        (["date: Thu, 01 Jan 1970 00:00:00 GMT"], "set by the server"),
        ("x-a: b", "must be a list"),
        ([1], "must be a list"),
    ],
)
def test_a_bad_header_entry_is_a_config_error(entries: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config({"headers": entries})


def test_the_limits_default_to_off_and_may_not_be_negative() -> None:
    config = build_config({})
    assert (config.max_request_body_size, config.limit_concurrency) == (0, 0)
    assert config.server_header is True
    for name in ("max_request_body_size", "limit_concurrency"):
        with pytest.raises(ConfigError, match=name):
            build_config({name: -1})
    with pytest.raises(ConfigError, match="server_header must be bool"):
        build_config({"server_header": "no"})


# -- the worker's context --------------------------------------------------------------------------


def context(**settings: object) -> ServerContext:
    return ServerContext(app=None, protocol=ProtocolSettings(), keep_alive_timeout=5.0, **settings)  # type: ignore[arg-type]


def test_the_response_fields_are_built_once_from_the_settings() -> None:
    assert context().response_fields.defaults == [(b"server", b"osmium")]
    assert context(server_header=False).response_fields.defaults == []
    own = context(default_headers=(("x-env", "test"), ("server", "edge")))
    assert own.response_fields.defaults == [(b"x-env", b"test"), (b"server", b"edge")]
    assert context().concurrency is None
    limited = context(limit_concurrency=3)
    assert limited.concurrency is not None and limited.concurrency.limit == 3


def test_refusals_are_counted_with_the_defences() -> None:
    worker = context()
    worker.refused("limit_concurrency", 503)
    worker.refused("limit_concurrency", 503)
    worker.refused("max_request_body_size")
    assert worker.counters.defences == {"limit_concurrency": 2, "max_request_body_size": 1}


def test_the_concurrency_limit_refuses_past_it_and_frees_on_leave() -> None:
    limit = ConcurrencyLimit(2)
    assert limit.try_enter() and limit.try_enter()
    assert limit.full and not limit.try_enter()
    assert limit.in_flight == 2  # a refusal counts nothing
    limit.leave()
    assert not limit.full and limit.try_enter()


# -- the fields of a response ----------------------------------------------------------------------


class HeadSink:
    """A connection that keeps the response heads it is given."""

    def __init__(self, defaults: Headers) -> None:
        self.fields = ResponseFields(lambda: DATE, defaults)
        self.heads: list[Headers] = []

    def response_fields(self) -> ResponseFields:
        return self.fields

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self.heads.append(headers)

    def queue_body(
        self, stream_id: int, data: bytes, end_stream: bool, headers: Headers | None = None
    ) -> bool:
        """Bodies are not what these tests look at."""
        if headers is not None:
            self.heads.append(headers)
        return True


def response_head(app_fields: list[tuple[bytes, bytes]], defaults: Headers = DEFAULTS) -> Headers:
    sink = HeadSink(defaults)
    scope = build_scope([(b":method", b"GET"), (b":path", b"/")], "http", None, None, None)
    stream = HTTPStream(sink, 1, scope)  # type: ignore[arg-type]

    async def respond() -> None:
        await stream.send({"type": "http.response.start", "status": 200, "headers": app_fields})
        await stream.send({"type": "http.response.body", "body": b""})

    asyncio.run(respond())
    (head,) = sink.heads
    return head


def test_a_response_gets_the_date_and_the_defaults_after_its_own_fields() -> None:
    head = response_head([(b"Content-Type", b"text/plain"), (b"Connection", b"close")])
    assert head == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"date", DATE),
        *DEFAULTS,
    ]


def test_fields_given_as_other_byte_strings_go_out_as_bytes() -> None:
    head = response_head([(bytearray(b"X-Thing"), memoryview(b"v")), (b"x-other", b"w")])
    assert head[1:3] == [(b"x-thing", b"v"), (b"x-other", b"w")]
    assert all(type(name) is bytes and type(value) is bytes for name, value in head)


def test_the_app_s_own_server_date_and_default_win_once() -> None:
    head = response_head([(b"Server", b"shop"), (b"date", b"then")])
    assert head == [
        (b":status", b"200"),
        (b"server", b"shop"),
        (b"date", b"then"),
        (b"x-frame-options", b"DENY"),
    ]
    assert response_head([], defaults=[]) == [(b":status", b"200"), (b"date", DATE)]


# -- HPACK ----------------------------------------------------------------------------------------


def test_the_constant_fields_are_sent_as_literals_that_never_enter_the_table() -> None:
    peer = Peer()
    encoder = ConstantFieldsEncoder(DEFAULTS)
    peer.server._h2.encoder = encoder  # before any response: both tables are still empty
    for own_server in (False, True, False):
        stream_id = peer.request(GET)
        peer.client_to_server()
        if own_server:  # the app named one itself: tuples of its own, encoded as usual
            head = [(b":status", b"200"), (b"server", b"shop"), (b"x-frame-options", b"DENY")]
        else:
            head = [(b":status", b"200"), (b"date", DATE)]
            head += DEFAULTS
        peer.server.send_headers(stream_id, head, end_stream=True)
        (response, *_) = [
            event
            for event in peer.server_to_client()
            if isinstance(event, h2.events.ResponseReceived)
        ]
        assert response.headers == head
    assert (b"x-frame-options", b"DENY") in encoder.header_table.dynamic_entries  # the app's
    assert (b"server", b"osmium") not in encoder.header_table.dynamic_entries


def test_other_header_blocks_are_encoded_as_usual() -> None:
    encoder = ConstantFieldsEncoder(DEFAULTS)
    for headers in ([], [(b"x-trailer", b"1")], [(b":status", b"103"), (b"link", b"</a>")]):
        assert Decoder().decode(encoder.encode(headers), raw=True) == headers
    assert Decoder().decode(encoder.encode(DEFAULTS), raw=True) == DEFAULTS  # no :status
