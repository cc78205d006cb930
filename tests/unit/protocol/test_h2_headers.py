"""osmium's one-pass request header checks agree with h2's own inbound validation, which they
replace: on the same header lists, both accept or both refuse (a differential property)."""

from __future__ import annotations

import pytest
from h2.exceptions import ProtocolError
from h2.utilities import HeaderValidationFlags, normalize_inbound_headers, validate_headers
from hypothesis import given, settings
from hypothesis import strategies as st

from osmium.protocol.h2_headers import check_request, check_trailers

NAMES = [
    b":method", b":path", b":scheme", b":authority", b":protocol", b":status", b":custom",
    b"host", b"te", b"connection", b"upgrade", b"cookie", b"x-ok", b"X-Upper", b"", b"a b",
    b"a:b", b"\x7f", b"caf\xc3\xa9",
]  # fmt: skip
VALUES = [
    b"GET", b"CONNECT", b"POST", b"/", b"", b"http", b"example.org", b"other.org", b"trailers",
    b"TRAILERS", b"gzip", b"websocket", b" lead", b"trail\t", b"a\nb", b"a\rb", b"a\x00b", b"ok",
]  # fmt: skip
REQUEST = HeaderValidationFlags(
    is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False
)
TRAILERS = HeaderValidationFlags(
    is_client=False, is_trailer=True, is_response_header=False, is_push_promise=False
)
VALID = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a")]


def h2_accepts(headers: list[tuple[bytes, bytes]], flags: HeaderValidationFlags) -> bool:
    """h2's own pipeline as it ran before: normalise (cookies joined, moved last), validate."""
    try:
        list(validate_headers(list(normalize_inbound_headers(headers, flags)), flags))
    except ProtocolError:
        return False
    return True


def osmium_accepts(headers: list[tuple[bytes, bytes]], trailers: bool) -> bool:
    normalised = list(normalize_inbound_headers(headers, TRAILERS if trailers else REQUEST))
    try:
        (check_trailers if trailers else check_request)(normalised)
    except ProtocolError:
        return False
    return True


fields = st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES))


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(fields, max_size=3),
    st.permutations(VALID),
    st.lists(fields, max_size=3),
    st.booleans(),
)
def test_the_same_requests_are_refused(
    before: list, pseudo: list, after: list, drop_one: bool
) -> None:
    headers = [*before, *pseudo[int(drop_one) :], *after]
    assert osmium_accepts(headers, trailers=False) == h2_accepts(headers, REQUEST), headers


@settings(max_examples=1000, deadline=None)
@given(st.lists(fields, max_size=5))
def test_the_same_trailers_are_refused(headers: list) -> None:
    assert osmium_accepts(headers, trailers=True) == h2_accepts(headers, TRAILERS), headers


@pytest.mark.parametrize(
    "headers",
    [
        VALID,
        [(b":method", b"CONNECT"), (b":authority", b"a")],
        [(b":method", b"CONNECT"), (b":protocol", b"websocket"), *VALID[1:]],
        [*VALID, (b"host", b"a"), (b"te", b"trailers")],
    ],
    ids=["get", "connect", "extended-connect", "host-and-te"],
)
def test_valid_requests_pass_twice(headers: list) -> None:
    # The second time the names and values are remembered as valid: still accepted.
    for _ in range(2):
        check_request(headers)
