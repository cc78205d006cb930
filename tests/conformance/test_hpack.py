"""RFC 7541 (HPACK) as used by RFC 9113 §4.3: field block decoding and its errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame

from tests.conformance.conftest import Connect
from tests.conformance.frames import (
    STATIC_AUTHORITY,
    STATIC_METHOD_GET,
    STATIC_PATH_NAME,
    STATIC_SCHEME_HTTP,
    ErrorCode,
    RawClient,
    Setting,
    hpack_indexed,
    hpack_int,
    hpack_literal,
    hpack_size_update,
    hpack_string,
    request_block,
)
from tests.conformance.servers import conformance_server
from tests.server_process import ServerProcess

SMALL_HEADER_LIST = 1000
FIRST_DYNAMIC = 62  # RFC 7541 §2.3.3: the static table has 61 entries


@pytest.fixture(scope="module")
def small_header_list_server() -> Iterator[ServerProcess]:
    """A server advertising SETTINGS_MAX_HEADER_LIST_SIZE = 1000."""
    with conformance_server("--max-header-list-size", str(SMALL_HEADER_LIST)) as process:
        yield process


def _block(path_field: bytes, *extra: bytes) -> bytes:
    """GET with a hand-encoded :path field and static-table method/scheme/authority."""
    return (
        hpack_indexed(STATIC_METHOD_GET)
        + hpack_indexed(STATIC_SCHEME_HTTP)
        + path_field
        + hpack_literal(STATIC_AUTHORITY, "localhost")
        + b"".join(extra)
    )


def _send(client: RawClient, block: bytes) -> int:
    stream = client.next_stream_id()
    client.send_headers(stream, block=block)
    return stream


# -- decoding that must work ---------------------------------------------------------------------


def test_dynamic_table_entry_is_reused_across_requests(h2: RawClient) -> None:
    """RFC 7541 §2.3.2, §6.2.1: an entry added with incremental indexing is referenced by a
    later block on the same connection (index 62)."""
    first = _send(
        h2, _block(hpack_literal(STATIC_PATH_NAME, "/big?size=7", indexing="incremental"))
    )
    assert len(h2.read_response(first).body) == 7
    second = _send(h2, _block(hpack_indexed(FIRST_DYNAMIC)))
    assert len(h2.read_response(second).body) == 7


def test_dynamic_table_indexes_shift_as_entries_are_added(h2: RawClient) -> None:
    """RFC 7541 §2.3.3: the newest entry is 62; older ones move up (63, 64...)."""
    for size in (1, 2, 3):
        path = hpack_literal(STATIC_PATH_NAME, f"/big?size={size}", indexing="incremental")
        h2.read_response(_send(h2, _block(path)))
    for index, size in ((62, 3), (63, 2), (64, 1)):
        assert len(h2.read_response(_send(h2, _block(hpack_indexed(index)))).body) == size


def test_stateful_encoder_across_many_requests(h2: RawClient) -> None:
    """RFC 7541 §2.2: one encoding context per connection: 20 requests from one Encoder."""
    for number in range(20):
        response = h2.get("/", headers=[("x-request", "same"), ("x-number", str(number))])
        assert response.status == 200


@pytest.mark.parametrize("indexing", ["without", "never", "incremental"])
def test_literal_representations_are_accepted(h2: RawClient, indexing: str) -> None:
    """RFC 7541 §6.2.1-§6.2.3: all three literal representations, with an indexed name."""
    path = hpack_literal(STATIC_PATH_NAME, "/big?size=5", indexing=indexing)
    assert len(h2.read_response(_send(h2, _block(path))).body) == 5


def test_literal_with_literal_name_is_accepted(h2: RawClient) -> None:
    """RFC 7541 §6.2: a literal name (new name) representation."""
    block = _block(hpack_literal(":path", "/big?size=4"), hpack_literal("x-new-name", "value"))
    assert len(h2.read_response(_send(h2, block)).body) == 4


def test_huffman_encoded_strings_are_accepted(h2: RawClient) -> None:
    """RFC 7541 §5.2: Huffman-coded names and values are decoded."""
    block = _block(
        hpack_literal(STATIC_PATH_NAME, "/big?size=9", huffman=True),
        hpack_literal("x-huffman-name", "huffman value", huffman=True),
    )
    assert len(h2.read_response(_send(h2, block)).body) == 9


def test_table_size_updates_at_block_start_are_accepted(h2: RawClient) -> None:
    """RFC 7541 §4.2, §6.3: up to two size updates at the start of a block (0 then 4096)."""
    block = hpack_size_update(0) + hpack_size_update(4096) + request_block("/")
    assert h2.read_response(_send(h2, block)).status == 200


def test_table_size_update_to_zero_evicts_entries(h2: RawClient) -> None:
    """RFC 7541 §4.3, §6.3: shrinking the table to 0 evicts every entry: index 62 is then
    out of range -> COMPRESSION_ERROR (RFC 9113 §4.3)."""
    path = hpack_literal(STATIC_PATH_NAME, "/", indexing="incremental")
    h2.read_response(_send(h2, _block(path)))
    h2.read_response(_send(h2, hpack_size_update(0) + request_block("/")))
    _send(h2, _block(hpack_indexed(FIRST_DYNAMIC)))
    h2.expect_connection_error(ErrorCode.COMPRESSION_ERROR)


# -- decoding errors: RFC 9113 §4.3 connection error COMPRESSION_ERROR -----------------------------

BAD_BLOCKS = {
    # §6.1: index 0 is not used.
    "index-zero": _block(hpack_indexed(0)),
    # §2.3.3: an index beyond static + dynamic table.
    "index-out-of-range": _block(hpack_indexed(70)),
    "literal-name-index-out-of-range": _block(hpack_literal(70, "/")),
    # §6.3: the new size must not exceed SETTINGS_HEADER_TABLE_SIZE (4096).
    "size-update-above-limit": hpack_size_update(4097) + request_block("/"),
    # §4.2: a size update must come at the start of the block.
    "size-update-after-field": request_block("/") + hpack_size_update(0),
    # §5.2: padding longer than 7 bits, padding that is not EOS' prefix, and the EOS symbol.
    "huffman-padding-too-long": _block(hpack_int(STATIC_PATH_NAME, 4) + b"\x81\xff"),
    "huffman-padding-not-ones": _block(hpack_int(STATIC_PATH_NAME, 4) + b"\x81\x00"),
    "huffman-eos-symbol": _block(hpack_int(STATIC_PATH_NAME, 4) + b"\x84\xff\xff\xff\xff"),
    # §5.1: an integer that overflows any sane implementation limit.
    "integer-overflow": _block(b"\xff" + b"\xff" * 10 + b"\x7f"),
    # Truncation: a string or an integer running past the end of the block.
    "truncated-string": _block(hpack_int(STATIC_PATH_NAME, 4) + hpack_int(100, 7) + b"/short"),
    "truncated-integer": request_block("/") + b"\xff",
    "truncated-literal-name": request_block("/") + b"\x40",
}


@pytest.mark.parametrize("block", BAD_BLOCKS.values(), ids=BAD_BLOCKS.keys())
def test_decoding_error_is_compression_error(h2: RawClient, block: bytes) -> None:
    """RFC 9113 §4.3: a field block that fails to decode -> connection COMPRESSION_ERROR."""
    _send(h2, block)
    h2.expect_connection_error(ErrorCode.COMPRESSION_ERROR)


def test_hpack_string_helper_round_trips() -> None:
    """RFC 7541 §5.2: sanity check of the test's own encoder against the hpack library."""
    from hpack import Decoder

    block = hpack_literal("x-name", "value", huffman=True) + hpack_literal("x-raw", "raw")
    assert Decoder().decode(block) == [("x-name", "value"), ("x-raw", "raw")]
    assert hpack_string("ab") == b"\x02ab"


# -- the server's encoder ------------------------------------------------------------------------


def test_server_blocks_decode_with_one_context(h2: RawClient) -> None:
    """RFC 7541 §2.2: every response block decodes in order with one decoder (the client's
    read loop fails on any decoding error)."""
    streams = [h2.request(path) for path in ("/", "/trailers", "/missing", "/", "/trailers")]
    for stream in streams:
        assert h2.read_response(stream).status in (200, 404)


def test_server_honours_header_table_size_zero(connect: Connect) -> None:
    """RFC 7541 §4.2, RFC 9113 §6.5.2: after SETTINGS_HEADER_TABLE_SIZE 0 the server's next
    block starts with a size update, and no block references the dynamic table."""
    client = connect(settings={Setting.HEADER_TABLE_SIZE: 0})
    for _ in range(3):
        assert client.get("/").status == 200
    blocks = [f for f in client.received if isinstance(f, HeadersFrame)]
    first = bytes(blocks[0].data)
    assert first[0] & 0xE0 == 0x20, f"first block does not start with a size update: {first!r}"
    assert client.decoder.header_table_size == 0


# -- header list size ----------------------------------------------------------------------------


def _huge_block(client: RawClient, total: int, *, indexing: str = "without") -> bytes:
    fields = [
        hpack_literal(f"x-filler-{index}", "f" * 4000, indexing=indexing)
        for index in range(total // 4000 + 1)
    ]
    return request_block("/") + b"".join(fields)


def _send_in_continuations(client: RawClient, stream: int, block: bytes) -> None:
    size = 16_000
    chunks = [block[index : index + size] for index in range(0, len(block), size)]
    client.send_headers(stream, block=chunks[0], end_headers=len(chunks) == 1)
    for index, chunk in enumerate(chunks[1:], start=2):
        client.send_continuation(stream, chunk, end_headers=index == len(chunks))


REFUSALS = (
    ErrorCode.PROTOCOL_ERROR,
    ErrorCode.REFUSED_STREAM,
    ErrorCode.ENHANCE_YOUR_CALM,
    ErrorCode.CANCEL,
)


def _expect_refused(client: RawClient, stream: int) -> None:
    """RFC 9113 §10.5.1: 431, or a stream/connection error, for an oversized header list."""
    frame = client.wait_for(
        lambda f: isinstance(f, GoAwayFrame) or f.stream_id == stream, "an answer to the request"
    )
    if isinstance(frame, HeadersFrame):
        response = client.read_response(stream)
        assert response.status == 431, f"oversized header list got {response.status}"
    else:
        assert isinstance(frame, (RstStreamFrame, GoAwayFrame)), frame
        assert frame.error_code in REFUSALS, frame


def test_header_list_over_default_limit_is_refused(h2: RawClient, connect: Connect) -> None:
    """RFC 9113 §6.5.2, §10.5.1: a header list over MAX_HEADER_LIST_SIZE (65536) is refused
    (431, RST_STREAM or GOAWAY), and the server keeps serving."""
    stream = h2.next_stream_id()
    _send_in_continuations(h2, stream, _huge_block(h2, 70_000))
    _expect_refused(h2, stream)
    assert connect().get("/").status == 200


def test_hpack_state_survives_refused_header_list(h2: RawClient) -> None:
    """RFC 9113 §4.3: a refused block is still decoded, so the table stays in sync: if the
    connection survives, a later block referencing an entry added earlier still decodes."""
    path = hpack_literal(STATIC_PATH_NAME, "/big?size=6", indexing="incremental")
    h2.read_response(_send(h2, _block(path)))
    stream = h2.next_stream_id()
    _send_in_continuations(h2, stream, _huge_block(h2, 70_000))
    _expect_refused(h2, stream)
    if not any(isinstance(f, GoAwayFrame) for f in h2.received):
        # One oversized insert would evict everything: the filler was "without indexing".
        assert len(h2.read_response(_send(h2, _block(hpack_indexed(62)))).body) == 6


def test_header_list_within_advertised_small_limit_is_served(
    connect: Connect, small_header_list_server: ServerProcess
) -> None:
    """RFC 9113 §6.5.2: the server advertises 1000, and a 500-byte header list is served."""
    client = connect(small_header_list_server)
    assert client.server_settings[Setting.MAX_HEADER_LIST_SIZE] == SMALL_HEADER_LIST
    assert client.get("/", headers=[("x-filler", "f" * 400)]).status == 200


def test_header_list_over_advertised_small_limit_is_refused(
    connect: Connect, small_header_list_server: ServerProcess
) -> None:
    """RFC 9113 §6.5.2, §10.5.1: with MAX_HEADER_LIST_SIZE 1000 advertised, a 3000-byte list is
    refused (431, RST_STREAM or GOAWAY) rather than processed.

    §6.5.2 calls the setting advisory, so processing the request is not itself an RFC
    violation; but osmium documents --max-header-list-size as the limit it applies, and it
    does refuse lists over the default 65536 (test above)."""
    client = connect(small_header_list_server)
    stream = client.next_stream_id()
    client.send_headers(stream, block=request_block("/") + hpack_literal("x-filler", "f" * 3000))
    _expect_refused(client, stream)
