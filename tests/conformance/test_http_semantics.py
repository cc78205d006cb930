"""RFC 9113 §8: HTTP message exchange, fields, pseudo-headers, malformed messages."""

from __future__ import annotations

import re

import pytest
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame

from tests.conformance.frames import ErrorCode, RawClient, hpack_literal, request_block

Fields = list[tuple[str, str]]


def _base(path: str = "/") -> Fields:
    return [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "localhost")]


def _without(name: str) -> Fields:
    return [field for field in _base() if field[0] != name]


def _with(*extra: tuple[str, str]) -> Fields:
    return [*_base(), *extra]


# -- §8.1.1 malformed requests: stream error PROTOCOL_ERROR --------------------------------------

MALFORMED: dict[str, Fields] = {
    # §8.3.1: :method, :scheme and :path MUST be present (non-CONNECT).
    "missing-method": _without(":method"),
    "missing-scheme": _without(":scheme"),
    "missing-path": _without(":path"),
    # §8.3.1: each pseudo-header at most once.
    "duplicate-method": [*_base(), (":method", "GET")],
    "duplicate-scheme": [*_base(), (":scheme", "https")],
    "duplicate-path": [*_base(), (":path", "/other")],
    "duplicate-authority": [*_base(), (":authority", "example.com")],
    # §8.3.1: :path MUST NOT be empty for http URIs.
    "empty-path": [(":method", "GET"), (":scheme", "http"), (":path", ""), (":authority", "h")],
    # §8.3: undefined pseudo-headers, and response pseudo-headers in requests.
    "unknown-pseudo-header": _with((":foo", "bar")),
    "status-in-request": _with((":status", "200")),
    # A 1xx :status first: h2 reads the block as an informational response.
    "informational-status-in-request": [(":status", "103"), *_base()],
    "uppercase-pseudo-header": [*_without(":path"), (":PATH", "/")],
    # §8.3: pseudo-headers MUST precede regular fields.
    "pseudo-after-regular": [
        (":method", "GET"),
        (":scheme", "http"),
        ("accept", "*/*"),
        (":path", "/"),
        (":authority", "localhost"),
    ],
    # §8.2.1: field names MUST be lowercase, no SP, no colon, not empty.
    "uppercase-name": _with(("X-Upper", "1")),
    "uppercase-letter-inside-name": _with(("x-uPper", "1")),
    "space-in-name": _with(("x bad", "1")),
    "colon-in-name": _with(("x:bad", "1")),
    "empty-name": _with(("", "value")),
    "control-char-in-name": _with(("x\x01bad", "1")),
    # §8.2.1: field values MUST NOT contain NUL, CR, LF, nor start/end with SP or HTAB.
    "nul-in-value": _with(("x-bad", "a\x00b")),
    "cr-in-value": _with(("x-bad", "a\rb")),
    "lf-in-value": _with(("x-bad", "a\nb")),
    "leading-space-in-value": _with(("x-bad", " value")),
    "trailing-tab-in-value": _with(("x-bad", "value\t")),
    # §8.2.2: connection-specific fields MUST NOT appear; TE only with "trailers".
    "connection": _with(("connection", "keep-alive")),
    "keep-alive": _with(("keep-alive", "timeout=5")),
    "proxy-connection": _with(("proxy-connection", "keep-alive")),
    "transfer-encoding": _with(("transfer-encoding", "chunked")),
    "upgrade": _with(("upgrade", "h2c")),
    "te-gzip": _with(("te", "gzip")),
    "te-trailers-and-more": _with(("te", "trailers, deflate")),
    # §8.5: CONNECT omits :scheme and :path and carries :authority.
    "connect-with-path": [
        (":method", "CONNECT"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "localhost:443"),
    ],
    "connect-without-authority": [(":method", "CONNECT")],
}


@pytest.mark.parametrize("fields", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_is_stream_error(h2: RawClient, fields: Fields) -> None:
    """§8.1.1: a malformed request MUST be treated as a stream error of type PROTOCOL_ERROR."""
    block = b"".join(hpack_literal(name, value) for name, value in fields)
    h2.send_headers(1, block=block)
    h2.expect_stream_error(1, ErrorCode.PROTOCOL_ERROR)
    assert not any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in h2.received)


@pytest.mark.parametrize("end_stream", [True, False], ids=["end-stream", "open"])
def test_informational_status_in_a_request_is_a_stream_error(
    h2: RawClient, end_stream: bool
) -> None:
    """§8.1.1, §8.3: a request with a 1xx :status is malformed, whether or not it ends its
    stream: RST_STREAM, and the connection serves the next request."""
    fields = [(":status", "100"), *_base()]
    block = b"".join(hpack_literal(name, value) for name, value in fields)
    stream_id = h2.next_stream_id()
    h2.send_headers(stream_id, block=block, end_stream=end_stream)
    assert isinstance(h2.expect_stream_error(stream_id, ErrorCode.PROTOCOL_ERROR), RstStreamFrame)
    assert h2.get("/").status == 200


def test_te_trailers_is_allowed(h2: RawClient) -> None:
    """§8.2.2: TE is allowed with exactly the value "trailers"."""
    assert h2.get("/", headers=[("te", "trailers")]).status == 200


def test_request_without_authority_but_with_host_is_served(h2: RawClient) -> None:
    """§8.3.1: a request without :authority may carry Host instead; it is not malformed."""
    fields = [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("host", "localhost")]
    h2.send_headers(1, fields)
    assert h2.read_response(1).status == 200


def test_split_cookie_fields_are_accepted(h2: RawClient) -> None:
    """§8.2.3: the Cookie field may be split into several fields; the request is valid."""
    response = h2.get("/", headers=[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")])
    assert response.status == 200


def test_options_asterisk_is_a_valid_request(h2: RawClient) -> None:
    """§8.3.1: ":path *" is valid for OPTIONS; the server answers with a response."""
    h2.send_headers(1, h2.request_headers("*", "OPTIONS"))
    response = h2.read_response(1)
    assert 200 <= response.status <= 599


# -- §8.1.1 content-length -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "chunks"),
    [(10, [b"short"]), (2, [b"toolong"]), (5, [b"abc", b"def"]), (5, [])],
    ids=["fewer-bytes", "more-bytes", "more-bytes-over-frames", "no-body"],
)
def test_content_length_mismatch_is_stream_error(
    h2: RawClient, declared: int, chunks: list[bytes]
) -> None:
    """§8.1.1: content-length not equal to the sum of DATA payloads -> PROTOCOL_ERROR."""
    fields = h2.request_headers("/echo", "POST", [("content-length", str(declared))])
    h2.send_headers(1, fields, end_stream=not chunks)
    for index, chunk in enumerate(chunks):
        h2.send_data(1, chunk, end_stream=index == len(chunks) - 1)
    h2.expect_stream_error(1, ErrorCode.PROTOCOL_ERROR)


def test_matching_content_length_is_accepted(h2: RawClient) -> None:
    """§8.1.1: content-length equal to the DATA payload sum is fine, across frames too."""
    fields = h2.request_headers("/echo", "POST", [("content-length", "10")])
    h2.send_headers(1, fields, end_stream=False)
    h2.send_data(1, b"01234", end_stream=False)
    h2.send_data(1, b"56789")
    assert h2.read_response(1).body == b"0123456789"


def test_content_length_excludes_padding(h2: RawClient) -> None:
    """§8.1.1, §6.1: padding is not content: content-length 4 with 4 data + 20 padding is valid."""
    fields = h2.request_headers("/echo", "POST", [("content-length", "4")])
    h2.send_headers(1, fields, end_stream=False)
    h2.send_data(1, b"data", pad_length=20)
    assert h2.read_response(1).body == b"data"


# -- §8.1 request trailers -----------------------------------------------------------------------


def test_request_trailers_are_accepted(h2: RawClient) -> None:
    """§8.1: a request may end with a trailer field block (HEADERS with END_STREAM)."""
    h2.send_headers(1, h2.request_headers("/echo", "POST"), end_stream=False)
    h2.send_data(1, b"body", end_stream=False)
    h2.send_headers(1, [("x-request-checksum", "abc")], end_stream=True)
    response = h2.read_response(1)
    assert response.status == 200
    assert response.body == b"body"


def test_request_trailers_without_end_stream_are_stream_error(h2: RawClient) -> None:
    """§8.1: a trailer HEADERS frame MUST carry END_STREAM; otherwise PROTOCOL_ERROR."""
    h2.send_headers(1, h2.request_headers("/echo", "POST"), end_stream=False)
    h2.send_data(1, b"body", end_stream=False)
    h2.send_headers(1, [("x-request-checksum", "abc")], end_stream=False)
    h2.expect_stream_error(1, ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize(
    "trailer", [(":path", "/x"), (":status", "200"), ("X-Upper", "1"), ("connection", "close")]
)
def test_invalid_request_trailers_are_stream_error(h2: RawClient, trailer: tuple[str, str]) -> None:
    """§8.1, §8.3: trailers MUST NOT contain pseudo-headers; §8.2.1/§8.2.2 rules apply too."""
    h2.send_headers(1, h2.request_headers("/echo", "POST"), end_stream=False)
    h2.send_data(1, b"body", end_stream=False)
    h2.send_headers(1, block=hpack_literal(*trailer), end_stream=True)
    h2.expect_stream_error(1, ErrorCode.PROTOCOL_ERROR)


# -- responses -----------------------------------------------------------------------------------


def test_response_has_status_pseudo_header_first(h2: RawClient) -> None:
    """§8.3.2: a response carries exactly one :status, and pseudo-headers come first."""
    response = h2.get("/")
    names = [name for name, _ in response.headers]
    assert names[0] == ":status"
    assert names.count(":status") == 1
    assert not [name for name in names[1:] if name.startswith(":")]
    assert re.fullmatch(r"[1-5]\d\d", response.header(":status") or "")


def test_response_field_names_are_lowercase_without_connection_fields(h2: RawClient) -> None:
    """§8.2.1, §8.2.2: response names are lowercase; no connection-specific fields."""
    for path in ("/", "/trailers", "/stream?chunks=2", "/missing"):
        response = h2.get(path)
        for name, _ in response.headers:
            assert name == name.lower(), name
            assert name not in {"connection", "keep-alive", "transfer-encoding", "upgrade"}


def test_get_response_body_and_content_length(h2: RawClient) -> None:
    """§8.1: HEADERS, then DATA with END_STREAM; content-length matches the DATA."""
    response = h2.get("/")
    assert response.status == 200
    assert response.header("content-type") == "text/plain"
    assert response.header("content-length") == "11"
    assert response.body == b"hello world"


def test_unknown_path_gets_404(h2: RawClient) -> None:
    """§8.1: a complete response (404) for an unknown resource."""
    response = h2.get("/no-such-page")
    assert response.status == 404


def test_head_response_has_no_body(h2: RawClient) -> None:
    """§8.1, RFC 9110 §9.3.2: HEAD gets GET's headers and no content: no DATA frames."""
    h2.send_headers(1, h2.request_headers("/", "HEAD"))
    response = h2.read_response(1)
    assert response.status == 200
    assert response.header("content-length") == "11"
    assert response.body == b""
    assert not [f for f in h2.received if isinstance(f, DataFrame) and f.stream_id == 1]
    headers_frame = next(f for f in h2.received if isinstance(f, HeadersFrame))
    assert "END_STREAM" in headers_frame.flags


def test_head_of_large_resource_has_no_body(h2: RawClient) -> None:
    """RFC 9110 §9.3.2: HEAD of a 100000-byte resource: content-length 100000, zero DATA."""
    h2.send_headers(1, h2.request_headers("/big?size=100000", "HEAD"))
    response = h2.read_response(1)
    assert response.header("content-length") == "100000"
    assert response.body == b""


def test_response_trailers_end_the_stream(h2: RawClient) -> None:
    """§8.1: response trailers are a final HEADERS with END_STREAM, after the DATA."""
    response = h2.get("/trailers")
    assert response.body == b"body with trailers"
    assert response.trailers == [("x-checksum", "demo-123")]
    frames = [
        f for f in h2.received if f.stream_id == 1 and isinstance(f, (HeadersFrame, DataFrame))
    ]
    assert isinstance(frames[-1], HeadersFrame)
    assert "END_STREAM" in frames[-1].flags
    assert not any("END_STREAM" in f.flags for f in frames[:-1])


def test_response_trailers_have_no_pseudo_headers(h2: RawClient) -> None:
    """§8.1: trailers MUST NOT include pseudo-header fields."""
    response = h2.get("/trailers")
    assert response.trailers is not None
    assert not [name for name, _ in response.trailers if name.startswith(":")]


def test_early_response_resets_with_no_error(h2: RawClient) -> None:
    """§8.1: a server that answers before the request body ends may RST_STREAM the stream, but
    only with NO_ERROR, and only after the complete response."""
    h2.send_headers(1, h2.request_headers("/"), end_stream=False)
    response = h2.read_response(1)
    assert response.body == b"hello world"
    h2.ping()
    resets = [f for f in h2.received if isinstance(f, RstStreamFrame) and f.stream_id == 1]
    assert all(f.error_code == ErrorCode.NO_ERROR for f in resets), resets


def test_concurrent_requests_each_get_their_response(h2: RawClient) -> None:
    """§8.1, §5: each stream carries one exchange; interleaved responses stay on their streams."""
    streams = {
        h2.request("/slow?ms=100"): b"slow response",
        h2.request("/"): b"hello world",
        h2.request("/big?size=40000"): b"x" * 40_000,
        h2.request("/stream?chunks=5&size=1000"): b"s" * 5000,
    }
    for stream, body in streams.items():
        assert h2.read_response(stream).body == body


def test_post_echo_round_trip(h2: RawClient) -> None:
    """§8.1: request content in DATA frames, response content in DATA frames."""
    body = bytes(range(256)) * 100
    stream = h2.request("/echo", "POST", body=body)
    assert h2.read_response(stream).body == body


def test_static_only_request_block(h2: RawClient) -> None:
    """§8.3.1: a request with only the required pseudo-headers (no regular fields) is served."""
    h2.send_headers(1, block=request_block("/"))
    assert h2.read_response(1).status == 200
