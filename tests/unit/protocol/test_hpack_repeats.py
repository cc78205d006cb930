"""A decoder and an encoder that answer repeated header blocks from memory code exactly as
hpack's."""

from __future__ import annotations

import hpack
from hypothesis import example, given, settings
from hypothesis import strategies as st

from osmium.protocol.hpack_repeats import MAX_BLOCKS, RepeatingBlockDecoder, RepeatingBlockEncoder

FIELDS = [
    (b":method", b"GET"),
    (b":path", b"/"),
    (b":path", b"/items?id=3"),
    (b":authority", b"example.test"),
    (b"user-agent", b"h2load nghttp2/1.64"),
    (b"accept", b"*/*"),
    (b"x-long", b"v" * 300),
]
#: A header list: a few of FIELDS, some always repeated so blocks recur.
HEADER_LIST = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=5)
#: What the peer does between blocks: change its table size, or change our limits.
STEP = st.one_of(
    st.tuples(st.just("block"), HEADER_LIST),
    st.tuples(st.just("block"), HEADER_LIST),
    st.tuples(st.just("block"), HEADER_LIST),
    st.tuples(st.just("repeat"), st.integers(0, 20)),
    st.tuples(st.just("table-size"), st.sampled_from([0, 64, 256, 4096])),
    st.tuples(st.just("max-list"), st.sampled_from([40, 200, 65_536])),
    st.tuples(st.just("max-table"), st.sampled_from([0, 256, 4096])),
    st.tuples(st.just("garbage"), st.binary(min_size=1, max_size=8)),
)


def outcome(decoder: hpack.Decoder, block: bytes) -> object:
    try:
        return decoder.decode(block, raw=True)
    except Exception as error:  # any failure must be the same failure
        return type(error)


@settings(max_examples=300, deadline=None)
@example(  # the table emptied by a size update alone: a kept block's entries are gone
    steps=[
        ("block", [FIELDS[4]]),
        ("block", [FIELDS[4]]),
        ("table-size", 0),
        ("block", [FIELDS[0]]),
        ("repeat", 1),
    ]
)
@given(steps=st.lists(STEP, max_size=40))
def test_repeated_blocks_decode_as_hpack_decodes_them(steps: list[tuple]) -> None:
    encoder = hpack.Encoder()
    plain = hpack.Decoder(65_536)
    repeating = RepeatingBlockDecoder(65_536)
    sent: list[bytes] = []
    for kind, value in steps:
        if kind == "block":
            block = encoder.encode(value)
        elif kind == "repeat":
            if not sent:
                continue
            block = sent[value % len(sent)]
        elif kind == "table-size":
            encoder.header_table_size = value
            continue
        elif kind == "max-list":
            plain.max_header_list_size = repeating.max_header_list_size = value
            continue
        elif kind == "max-table":
            plain.max_allowed_table_size = repeating.max_allowed_table_size = value
            continue
        else:
            block = value
        sent.append(block)
        assert outcome(repeating, block) == outcome(plain, block)
        assert repeating.header_table.dynamic_entries == plain.header_table.dynamic_entries


#: A request whose second block, once the first put its user-agent in the table, repeats.
USER_AGENT_GET = [(b":method", b"GET"), (b"user-agent", b"curl")]


def with_a_repeating_block() -> tuple[hpack.Encoder, RepeatingBlockDecoder, bytes]:
    """An encoder and a decoder whose tables hold USER_AGENT_GET's user-agent, and the block
    that codes USER_AGENT_GET now, without changing them."""
    encoder = hpack.Encoder()
    decoder = RepeatingBlockDecoder(65_536)
    decoder.decode(encoder.encode(USER_AGENT_GET), raw=True)
    return encoder, decoder, encoder.encode(USER_AGENT_GET)


def test_a_repeated_block_is_not_decoded_again() -> None:
    _, decoder, repeated = with_a_repeating_block()
    first = decoder.decode(repeated, raw=True)
    decoder.header_table.get_by_index = None  # decoding again would fail
    assert decoder.decode(repeated, raw=True) == first == USER_AGENT_GET
    assert len(decoder._blocks) <= MAX_BLOCKS


def test_a_repeated_block_comes_with_the_memo_of_its_first_decoding() -> None:
    encoder, decoder, repeated = with_a_repeating_block()
    decoder.decode(repeated, raw=True)
    memo = decoder.memo
    assert memo == {}
    memo["checked"] = True
    decoder.decode(encoder.encode([(b"x-new", b"1")]), raw=True)  # changes the table
    assert decoder.memo is None
    decoder.decode(repeated, raw=True)  # the table has changed: decoded afresh, a new memo
    assert decoder.memo == {}
    again = decoder.memo
    decoder.decode(repeated, raw=True)
    assert decoder.memo is again


#: A response's header list: plain pairs, or a field that must never be indexed.
RESPONSE_FIELD = st.one_of(
    st.sampled_from(FIELDS),
    st.sampled_from(FIELDS).map(lambda field: hpack.NeverIndexedHeaderTuple(*field)),
    st.sampled_from(FIELDS).map(lambda field: (*field, True)),
)
ENCODER_STEP = st.one_of(
    st.tuples(st.just("encode"), st.lists(RESPONSE_FIELD, min_size=1, max_size=5)),
    st.tuples(st.just("encode"), st.lists(st.sampled_from(FIELDS[:3]), min_size=1, max_size=3)),
    st.tuples(st.just("repeat"), st.integers(0, 20)),
    st.tuples(st.just("table-size"), st.sampled_from([0, 64, 256, 4096])),
)


@settings(max_examples=300, deadline=None)
@example(  # a never-indexed field equal, as a tuple, to a plain one
    steps=[("encode", [hpack.NeverIndexedHeaderTuple(*FIELDS[4])]), ("encode", [FIELDS[4]])]
)
@example(  # the table emptied between two encodings of the same list
    steps=[("encode", [FIELDS[4]]), ("encode", [FIELDS[4]]), ("table-size", 0), ("repeat", 1)]
)
@given(steps=st.lists(ENCODER_STEP, max_size=40))
def test_repeated_header_lists_encode_as_hpack_encodes_them(steps: list[tuple]) -> None:
    plain = hpack.Encoder()
    repeating = RepeatingBlockEncoder()
    sent: list[list] = []
    for kind, value in steps:
        if kind == "table-size":
            plain.header_table_size = repeating.header_table_size = value
            continue
        if kind == "repeat":
            if not sent:
                continue
            value = sent[value % len(sent)]
        sent.append(value)
        assert repeating.encode(list(value)) == plain.encode(list(value))
        assert repeating.header_table.dynamic_entries == plain.header_table.dynamic_entries


def test_a_repeated_header_list_is_not_encoded_again() -> None:
    encoder = RepeatingBlockEncoder()
    fields = [(b":status", b"200"), (b"content-type", b"text/plain")]
    encoder.encode(fields)  # adds content-type to the table
    repeated = encoder.encode(fields)
    encoder.add = None  # encoding again would fail
    assert encoder.encode(list(fields)) == repeated


def table_state(decoder: hpack.Decoder) -> tuple:
    table = decoder.header_table
    return list(table.dynamic_entries), table._current_size, table._maxsize, table.resized


@settings(max_examples=200, deadline=None)
@given(
    first=HEADER_LIST,
    table_size=st.sampled_from([None, 0, 256, 4096]),
    max_list=st.sampled_from([40, 65_536]),
    then=HEADER_LIST,
)
def test_connections_starting_with_the_same_block_decode_as_hpack(
    first: list, table_size: int | None, max_list: int, then: list
) -> None:
    """Three connections of one client: the first block, decoded once for all of them (table
    size update included), leaves each the table hpack leaves, and the next block decodes on it
    as on hpack's."""
    for _ in range(3):
        encoder = hpack.Encoder()
        if table_size is not None:
            encoder.header_table_size = table_size
        plain, repeating = hpack.Decoder(max_list), RepeatingBlockDecoder(max_list)
        for headers in (first, then):
            block = encoder.encode(headers)
            assert outcome(repeating, block) == outcome(plain, block)
            assert table_state(repeating) == table_state(plain)


@settings(max_examples=200, deadline=None)
@given(first=HEADER_LIST, then=HEADER_LIST, table_size=st.sampled_from([None, 0, 256]))
def test_connections_starting_with_the_same_header_list_encode_as_hpack(
    first: list, then: list, table_size: int | None
) -> None:
    """Three connections' first responses, encoded once for all of them: the same bytes and the
    same table as hpack's, and the next list encodes on it as on hpack's."""
    for _ in range(3):
        plain, repeating = hpack.Encoder(), RepeatingBlockEncoder()
        if table_size is not None:  # a client's SETTINGS_HEADER_TABLE_SIZE before the response
            plain.header_table_size = repeating.header_table_size = table_size
        for headers in (first, then):
            assert repeating.encode(list(headers)) == plain.encode(list(headers))
            assert table_state(repeating) == table_state(plain)
