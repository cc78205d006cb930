"""RFC 9113 §8.2-8.3 checks of the header blocks a client sends, in one pass per block.

They are h2's inbound validation, rule for rule (h2 runs it as a chain of seven generators over
every field: 13 % of a worker's instructions on small requests; h2's own is off, see
h2_internals.PlainConfig). A violation raises h2's ProtocolError, which the connection answers
as it answered h2's: GOAWAY(PROTOCOL_ERROR). Names already found valid are remembered, so the
fields clients repeat (names, and short values such as the method, scheme, authority, user
agent) cost a set lookup each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from h2.events import Event, RequestReceived, TrailersReceived
from h2.exceptions import ProtocolError

from osmium.protocol.events import Headers

#: What a field name may be made of (RFC 9113 §8.2.1): no controls, space, upper case, DEL or
#: non-ASCII, and no colon but a pseudo-header's first.
_NAME_BYTES = bytes(c for c in range(0x21, 0x7F) if not 0x41 <= c <= 0x5A and c != 0x3A)
#: Connection-specific fields (RFC 9113 §8.2.2); `te` is allowed with the value "trailers".
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
_METHOD, _SCHEME, _AUTHORITY, _PATH, _PROTOCOL = 1, 2, 4, 8, 16
_PSEUDO = {
    b":method": _METHOD,
    b":scheme": _SCHEME,
    b":authority": _AUTHORITY,
    b":path": _PATH,
    b":protocol": _PROTOCOL,
}
_COLON = 0x3A
#: A value with NUL, CR or LF anywhere, or space or tab first or last (§8.2.1).
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
#: Names and (short) values already found valid, up to a bound each: a client inventing new
#: ones costs a check each, never memory without end.
_valid_names: set[bytes] = set()
_valid_values: set[bytes] = set()
MAX_REMEMBERED = 1024
MAX_REMEMBERED_VALUE = 128


def check_received(events: Sequence[Event]) -> None:
    """Every request and trailer block among `events`; ProtocolError at the first violation."""
    for event in events:
        kind = type(event)
        if kind is RequestReceived:
            check_request(event.headers)  # type: ignore[attr-defined]
        elif kind is TrailersReceived:
            check_trailers(event.headers)  # type: ignore[attr-defined]


def check_request(headers: Headers) -> None:
    valid_names, valid_values = _valid_names, _valid_values
    seen = 0
    fields_started = False
    method = authority = host = None
    for name, value in headers:
        if name not in valid_names:
            _check_name(name)
        if value not in valid_values:
            _check_value(value)
        if name[0] == _COLON:
            if fields_started:
                raise ProtocolError(f"Received pseudo-header field out of sequence: {name!r}")
            bit = _PSEUDO.get(name)
            if bit is None:
                raise ProtocolError(f"Received unknown or response pseudo-header {name!r}")
            if seen & bit:
                raise ProtocolError(f"Received duplicate pseudo-header field {name!r}")
            seen |= bit
            if bit == _METHOD:
                method = value
            elif bit == _AUTHORITY:
                authority = value
            elif bit == _PATH and not value:
                raise ProtocolError("An empty :path header is forbidden")
        else:
            fields_started = True
            if name == b"host":
                if host is not None:
                    raise ProtocolError("Request header block has multiple Host headers.")
                host = value
            elif name in _CONNECTION_SPECIFIC or name == b"te":
                _check_regular(name, value)
    _check_pseudo_headers(seen, method)
    if authority is None and host is None:
        raise ProtocolError("Request header block does not have an :authority or Host header.")
    if authority is not None and host is not None and authority != host:
        raise ProtocolError(f"Mismatched :authority and Host headers: {authority!r} / {host!r}")


def check_trailers(headers: Headers) -> None:
    for name, value in headers:
        _check_name(name)
        _check_value(value)
        if name[0] == _COLON:
            raise ProtocolError(f"Received pseudo-header in trailer {name!r}")
        _check_regular(name, value)


def _check_name(name: bytes) -> None:
    if not name:
        raise ProtocolError("Received header name with zero length.")
    rest = name[1:] if name[0] == _COLON else name
    if rest.translate(None, _NAME_BYTES):
        raise ProtocolError(f"Illegal character in header name: {name!r}")
    if len(_valid_names) < MAX_REMEMBERED:
        _valid_names.add(name)


def _check_value(value: bytes) -> None:
    if _BAD_VALUE.search(value):
        raise ProtocolError(
            f"Illegal character or surrounding whitespace in header value {value!r}"
        )
    if len(value) <= MAX_REMEMBERED_VALUE and len(_valid_values) < MAX_REMEMBERED:
        _valid_values.add(value)


def _check_regular(name: bytes, value: bytes) -> None:
    if name in _CONNECTION_SPECIFIC:
        raise ProtocolError(f"Connection-specific header field present: {name!r}.")
    if name == b"te" and value.lower() != b"trailers":
        raise ProtocolError(f"Invalid value for TE header: {value!r}")


def _check_pseudo_headers(seen: int, method: bytes | None) -> None:
    """Which pseudo-headers a request needs (RFC 9113 §8.3.1, CONNECT §8.5, RFC 8441 §4)."""
    if not seen & _METHOD:
        raise ProtocolError("Header block missing mandatory b':method' header")
    connect = method == b"CONNECT"
    if connect and not seen & _PROTOCOL:
        if seen & (_SCHEME | _PATH):
            raise ProtocolError("Ordinary CONNECT MUST NOT include :scheme or :path")
        return
    if not seen & _SCHEME or not seen & _PATH:
        raise ProtocolError("Header block missing mandatory :scheme or :path header")
    if not connect and seen & _PROTOCOL:
        raise ProtocolError("Encountered connect-request-only header :protocol")
