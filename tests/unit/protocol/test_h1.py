"""The HTTP/1.1 core on h11, fed with bytes: events out, responses and refusals in bytes."""

from __future__ import annotations

from osmium.asgi import ResponseFields
from osmium.protocol.events import Body, ConnectionFailed, EndBody, Request
from osmium.protocol.h1 import H2C_SWITCH, H1Connection

GET = b"GET /a?b=1 HTTP/1.1\r\nHost: example\r\n\r\n"


def test_a_request_becomes_http2_style_headers_then_end_body() -> None:
    core = H1Connection("http")
    events = core.receive(GET)
    assert events == [
        Request(1, [(b":method", b"GET"), (b":path", b"/a?b=1"), (b":scheme", b"http"),
                    (b"host", b"example")]),
        EndBody(1, []),
    ]  # fmt: skip


def test_chunked_body_arrives_as_body_events() -> None:
    core = H1Connection("http")
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    events = core.receive(head + b"5\r\nhello\r\n0\r\n\r\n")
    assert [type(e) for e in events] == [Request, Body, EndBody]
    assert events[1] == Body(1, b"hello", 5)


def test_pipelined_request_waits_for_the_response_to_the_first() -> None:
    core = H1Connection("http")
    events = core.receive(GET + GET.replace(b"/a", b"/second"))
    assert [e.stream_id for e in events if isinstance(e, Request)] == [1]
    core.start_response(200, [(b"content-length", b"2")])
    core.send_data(b"ok")
    core.end_response()
    assert core.data_to_send() == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    assert core.request_complete
    following = core.next_request()
    assert following is not None
    assert (b":path", b"/second?b=1") in following[0].headers


def test_conflicting_framing_is_refused_with_400_and_no_second_request() -> None:
    core = H1Connection("http")
    smuggled = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    events = core.receive(smuggled)
    assert len(events) == 1 and isinstance(events[0], ConnectionFailed)
    assert events[0].error_code == 400
    assert core.data_to_send().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert core.receive(b"GET / HTTP/1.1\r\n\r\n") == []


def test_oversized_header_block_is_431() -> None:
    core = H1Connection("http", max_header_bytes=1024)
    events = core.receive(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000)
    assert isinstance(events[0], ConnectionFailed) and events[0].error_code == 431


def test_trailers_only_follow_a_chunked_response() -> None:
    core = H1Connection("http")
    core.receive(GET)
    core.start_response(200, [])
    core.send_data(b"body")
    core.end_response([(b"x-sum", b"1")])
    assert core.data_to_send().endswith(b"4\r\nbody\r\n0\r\nx-sum: 1\r\n\r\n")


def test_accepting_h2c_answers_101_and_returns_the_bytes_after_the_request() -> None:
    core = H1Connection("http")
    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    core.receive(request + b"PRI * HTTP/2.0")
    assert core.accept_upgrade(H2C_SWITCH) == b"PRI * HTTP/2.0"
    assert core.data_to_send().startswith(b"HTTP/1.1 101 \r\nconnection: Upgrade\r\nupgrade: h2c")


def test_refusing_a_head_request_sends_no_body() -> None:
    """Found by the fuzzer: h11 frames a response to HEAD with no body, so the 400 has none."""
    core = H1Connection("http")
    events = core.receive(b"HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert events[-1] == ConnectionFailed(400, events[-1].reason)
    response = core.data_to_send()
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert response.endswith(b"\r\n\r\n")  # the head only


def test_connect_is_refused_with_501_instead_of_becoming_a_tunnel() -> None:
    """Found by the fuzzer: a 2xx to CONNECT would switch h11 to a tunnel nobody serves."""
    core = H1Connection("http")
    events = core.receive(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert len(events) == 1 and isinstance(events[0], ConnectionFailed)
    assert events[0].error_code == 501
    assert core.data_to_send().startswith(b"HTTP/1.1 501 Not Implemented\r\n")


def test_a_refusal_after_a_head_exchange_has_its_body() -> None:
    """Found by the fuzzer: the HEAD of the previous request must not shape the next refusal."""
    core = H1Connection("http")
    core.receive(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    core.start_response(200, [(b"content-length", b"0")])
    core.end_response()
    core.data_to_send()
    events = core.next_request()
    assert events == []
    events = core.receive(b"\x02\x1c\x00!\r\n\r\n")
    assert isinstance(events[-1], ConnectionFailed) and events[-1].error_code == 400
    assert core.data_to_send().endswith(b"\r\n\r\nBad Request")


def test_early_hints_precede_the_response_only_for_http11_clients() -> None:
    """RFC 8297's 103 before the final response; never to an HTTP/1.0 client (RFC 9110 §15.2),
    and not once the final response has started."""
    link = [(b"link", b"</style.css>; rel=preload; as=style")]
    core = H1Connection("http")
    core.receive(GET)
    core.send_informational(103, link)
    core.start_response(200, [(b"content-length", b"0")])
    core.send_informational(103, link)  # too late: ignored
    core.end_response()
    assert core.data_to_send() == (
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    )

    old_client = H1Connection("http")
    old_client.receive(b"GET / HTTP/1.0\r\n\r\n")
    old_client.send_informational(103, link)
    assert old_client.data_to_send() == b""


def test_the_core_s_own_answers_carry_the_server_s_fields_of_the_moment() -> None:
    """A refusal and a 101 get date, server and the defaults, the date as it is when each goes
    out; a field the 101 names itself (an app's, on a WebSocket's) is not added again."""
    dates = iter([b"Thu, 01 Jan 1970 00:00:00 GMT", b"Thu, 01 Jan 1970 00:00:01 GMT"])
    fields = ResponseFields(lambda: next(dates), [(b"server", b"osmium"), (b"x-team", b"core")])
    refusing = H1Connection("http", server_fields=fields.complete)
    refusing.receive(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    assert refusing.data_to_send() == (
        b"HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-length: 26\r\n"
        b"connection: close\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\nserver: osmium\r\n"
        b"x-team: core\r\n\r\nHTTP Version Not Supported"
    )
    upgrading = H1Connection("http", server_fields=fields.complete)
    upgrading.receive(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    upgrading.accept_upgrade([*H2C_SWITCH, (b"server", b"own")])
    assert upgrading.data_to_send() == (
        b"HTTP/1.1 101 \r\nconnection: Upgrade\r\nupgrade: h2c\r\nserver: own\r\n"
        b"date: Thu, 01 Jan 1970 00:00:01 GMT\r\nx-team: core\r\n\r\n"
    )
