"""RFC 9218 priority signals: the `priority` field (RFC 9651 Dictionary), merge, PRIORITY_UPDATE."""

from __future__ import annotations

import http_sf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from osmium.protocol.events import ErrorCode
from osmium.protocol.priority import (
    DEFAULT_PRIORITY,
    PRIORITY_UPDATE_TYPE,
    URGENCIES,
    Priority,
    PriorityUpdate,
    PriorityUpdateError,
    merge_response_priority,
    parse_priority,
    parse_priority_update,
)

URGENT_INCREMENTAL = Priority(0, True)
priorities = st.builds(Priority, st.sampled_from(URGENCIES), st.booleans())


def test_defaults_are_rfc_9218s() -> None:
    assert Priority(urgency=3, incremental=False) == DEFAULT_PRIORITY
    assert list(URGENCIES) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert PRIORITY_UPDATE_TYPE == 0x10


def test_absent_field_keeps_base() -> None:
    assert parse_priority(None) is DEFAULT_PRIORITY
    assert parse_priority(None, URGENT_INCREMENTAL) is URGENT_INCREMENTAL


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # The examples of RFC 9218 §4.1 and §4.2.
        (b"u=0", Priority(0, False)),
        (b"u=5, i", Priority(5, True)),
        # Each urgency, and each Boolean form of i.
        *[(b"u=%d" % u, Priority(u, False)) for u in URGENCIES],
        *[(b"u=%d, i" % u, Priority(u, True)) for u in URGENCIES],
        (b"i", Priority(3, True)),
        (b"i=?1", Priority(3, True)),
        (b"i=?0", Priority(3, False)),
        (b"u=7, i=?1", Priority(7, True)),
        (b"i, u=1", Priority(1, True)),
        (b"", DEFAULT_PRIORITY),
    ],
)
def test_valid_values(value: bytes, expected: Priority) -> None:
    assert parse_priority(value) == expected


@given(priorities, st.sampled_from(URGENCIES))
def test_omitted_parameter_keeps_base(base: Priority, urgency: int) -> None:
    assert parse_priority(b"u=%d" % urgency, base) == Priority(urgency, base.incremental)
    assert parse_priority(b"u=%d,i=?0" % urgency, base) == Priority(urgency, False)
    assert parse_priority(b"i", base) == Priority(base.urgency, True)
    assert parse_priority(b"i=?0", base) == Priority(base.urgency, False)
    assert parse_priority(b"foo=1", base) == base


@pytest.mark.parametrize(
    "value",
    [
        # Out of range (RFC 9218 §4: ignored, the parameter only).
        b"u=8",
        b"u=-1",
        b"u=999999999999999",
        # Unexpected types for u: Decimal, Boolean (not an Integer, though Python's bool is an
        # int), String, Token, Byte Sequence, Date, Display String, Inner List.
        b"u=1.0",
        b"u=?1",
        b'u="1"',
        b"u=one",
        b"u=:AQ==:",
        b"u=@1",
        b'u=%"1"',
        b"u=(1)",
    ],
)
def test_urgency_out_of_range_or_of_another_type_is_ignored(value: bytes) -> None:
    assert parse_priority(value, URGENT_INCREMENTAL) == URGENT_INCREMENTAL
    # ... and only that parameter: a valid i next to it still applies.
    assert parse_priority(value + b", i=?0", URGENT_INCREMENTAL) == Priority(0, False)


@pytest.mark.parametrize("value", [b"i=1", b"i=0", b"i=1.0", b'i="?1"', b"i=true", b"i=(?1)"])
def test_incremental_must_be_a_boolean(value: bytes) -> None:
    assert parse_priority(value, URGENT_INCREMENTAL) == URGENT_INCREMENTAL
    assert parse_priority(value + b", u=6") == Priority(6, False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 9651 §4.2.2: a later duplicate key overwrites the earlier member.
        (b"u=1, u=5", Priority(5, False)),
        (b"i, i=?0", Priority(3, False)),
        (b"i=?0, i", Priority(3, True)),
        # The last u wins even when it is then ignored: the earlier, valid one is gone.
        (b"u=1, u=9", DEFAULT_PRIORITY),
    ],
)
def test_duplicate_keys_last_wins(value: bytes, expected: Priority) -> None:
    assert parse_priority(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        b"u=2, foo=bar, *x=1, a_b-c.d9=?0, i",  # unknown keys of every allowed key character
        b"u=2;foo=1, i;bar",  # member parameters
        b'u=2;a=1;b="x";c=?0;d=:AQ==:;e=1.5;f=tok, i;x',
        b"u=2, x=(1 2 tok);p, i",  # an inner list on another key
        b"u=2, x=(), i",
    ],
)
def test_unknown_keys_and_parameters_are_ignored(value: bytes) -> None:
    assert parse_priority(value) == Priority(2, True)


def test_a_parameter_named_i_is_not_the_i_member() -> None:
    # "u=2; i": SP may follow ";", so this is u=2 carrying a parameter i, and no i member.
    assert parse_priority(b"u=2; i") == Priority(2, False)
    assert parse_priority(b"u=2;i") == Priority(2, False)


@pytest.mark.parametrize(
    "value",
    [
        b" u=2, i",  # RFC 9651 §4.2: leading and trailing SP are discarded
        b"u=2, i ",
        b"u=2 , i",  # OWS around the comma
        b"u=2,\ti",
        b"u=2,i",
        b"u=2,  \t i",
        b"u=2, i\t",  # a Dictionary discards OWS after each member, the last one too
    ],
)
def test_whitespace_allowed(value: bytes) -> None:
    assert parse_priority(value) == Priority(2, True)


@pytest.mark.parametrize(
    "value",
    [
        b"\tu=2",  # only SP may lead
        b"u =2",  # no whitespace around "="
        b"u= 2",
        b"u=2 i",  # members need a comma
        b"u=2,",  # trailing comma
        b",u=2",
        b"u=2,,i",
        b"U=2",  # keys are lowercase
        b"2u=2",
        b"_u=2",
        b"u=",  # a value must follow "="
        b"u=2;",  # a parameter key must follow ";"
        b"u=2;x=(1)",  # parameter values are bare items, not inner lists
        b"u=1.2345",  # at most 3 fraction digits
        b"u=1234567890123456",  # at most 15 integer digits
        b'u="open',
        b'u="\xc3\xa9"',  # non-ASCII inside a String
        b"u=2, i, \xc3\xa9=1",  # non-ASCII key
        b"u=2, i=?2",
        b"u=2, i\x00",
        b"u=(1 2",
    ],
)
def test_malformed_value_is_ignored_whole(value: bytes) -> None:
    # RFC 9651 §4.2: when parsing fails the whole field is ignored, valid members included.
    assert parse_priority(value, URGENT_INCREMENTAL) is URGENT_INCREMENTAL


@st.composite
def dictionaries(draw: st.DrawFn) -> dict[str, tuple[object, dict[str, object]]]:
    """RFC 9651 Dictionaries mixing u, i and unknown keys, with values of every bare type."""
    bare_items = st.one_of(
        st.integers(-10, 10),
        st.integers(-999_999_999_999_999, 999_999_999_999_999),
        st.booleans(),
        st.decimals(-999, 999, places=3),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=5),
        st.sampled_from([http_sf.Token("tok"), http_sf.Token("*a:b/c")]),
        st.binary(max_size=4),
    )
    parameters = st.dictionaries(st.sampled_from(["a", "b", "q"]), bare_items, max_size=2)
    values = st.one_of(bare_items, st.lists(st.tuples(bare_items, parameters), max_size=2))
    keys = st.sampled_from(["u", "i", "x", "ui", "*"])
    # min_size=1: an empty Dictionary has no serialisation (the field is left out).
    return draw(st.dictionaries(keys, st.tuples(values, parameters), min_size=1, max_size=4))


@given(dictionaries(), priorities)
def test_any_dictionary_yields_its_valid_u_and_i(
    members: dict[str, tuple[object, dict[str, object]]], base: Priority
) -> None:
    urgency = members.get("u", (None,))[0]
    incremental = members.get("i", (None,))[0]
    valid_urgency = type(urgency) is int and 0 <= urgency <= 7
    expected = Priority(
        urgency if valid_urgency else base.urgency,
        incremental if type(incremental) is bool else base.incremental,
    )
    assert parse_priority(http_sf.ser(members).encode(), base) == expected


@given(st.binary(max_size=40), priorities)
def test_any_bytes_give_a_valid_priority(value: bytes, base: Priority) -> None:
    priority = parse_priority(value, base)
    assert priority.urgency in URGENCIES
    assert isinstance(priority.incremental, bool)
    if any(byte > 0x7E for byte in value):
        assert priority is base  # no structured field holds a byte above "~"


def test_merge_response_priority_overrides_only_what_the_response_names() -> None:
    # RFC 9218 §8's example: the client asked u=5, i; the origin answers u=1.
    client = parse_priority(b"u=5, i")
    assert merge_response_priority(client, b"u=1") == Priority(1, True)
    assert merge_response_priority(client, b"i=?0") == Priority(5, False)
    assert merge_response_priority(client, b"u=0, i=?0") == Priority(0, False)
    assert merge_response_priority(client, None) is client
    assert merge_response_priority(client, b"") is client
    assert merge_response_priority(client, b"u=9") is client
    assert merge_response_priority(client, b"u=1,") is client  # malformed: ignored


def update_payload(stream_id: int, value: bytes = b"") -> bytes:
    return stream_id.to_bytes(4, "big") + value


def test_priority_update_payload() -> None:
    update = parse_priority_update(0, update_payload(5, b"u=1, i"))
    assert update == PriorityUpdate(prioritized_stream_id=5, field_value=b"u=1, i")
    # The reserved bit is ignored on receipt.
    assert parse_priority_update(0, update_payload(0x8000_0005)).prioritized_stream_id == 5
    assert parse_priority_update(0, update_payload(0x7FFF_FFFF)).prioritized_stream_id == 2**31 - 1
    assert parse_priority_update(0, update_payload(1)).field_value == b""
    assert parse_priority_update(0, memoryview(update_payload(3, b"i"))).field_value == b"i"
    # A push stream's id is even: whether it was promised is for the core, which knows.
    assert parse_priority_update(0, update_payload(2, b"u=1")).prioritized_stream_id == 2


@pytest.mark.parametrize(
    ("stream_id", "payload", "error_code"),
    [
        (1, update_payload(1, b"u=1"), ErrorCode.PROTOCOL_ERROR),  # not on stream 0
        (0, b"", ErrorCode.FRAME_SIZE_ERROR),
        (0, b"\x00\x00\x01", ErrorCode.FRAME_SIZE_ERROR),
        (0, update_payload(0, b"u=1"), ErrorCode.PROTOCOL_ERROR),  # prioritizes stream 0
        (0, update_payload(0x8000_0000), ErrorCode.PROTOCOL_ERROR),  # 0 behind the R bit
    ],
)
def test_priority_update_errors(stream_id: int, payload: bytes, error_code: ErrorCode) -> None:
    with pytest.raises(PriorityUpdateError) as raised:
        parse_priority_update(stream_id, payload)
    assert raised.value.error_code == error_code
    assert isinstance(raised.value, ValueError)


def test_priority_update_is_a_complete_set() -> None:
    # RFC 9218 §7: an omitted parameter means its default, not the stream's current value.
    current = Priority(1, True)
    assert PriorityUpdate(1, b"u=5").priority(current) == Priority(5, False)
    assert PriorityUpdate(1, b"i").priority(current) == Priority(3, True)
    assert PriorityUpdate(1, b"").priority(current) == DEFAULT_PRIORITY
    assert PriorityUpdate(1, b"u=9").priority(current) == DEFAULT_PRIORITY


def test_malformed_priority_update_is_ignored() -> None:
    current = Priority(1, True)
    assert PriorityUpdate(1, b"u=5,").priority(current) is current
    assert PriorityUpdate(1, b"u=\xff").priority(current) is current
