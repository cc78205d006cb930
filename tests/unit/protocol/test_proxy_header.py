"""The PROXY protocol header parser: framing as bytes arrive, both versions, every refusal."""

from __future__ import annotations

import socket
import struct

import pytest

from osmium.protocol.proxy_header import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    header_length,
    parse,
)

V1_TCP4 = b"PROXY TCP4 203.0.113.7 198.51.100.2 4711 443\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::7 2001:db8::2 4711 8443\r\n"


def v2(command: int, family: int, block: bytes) -> bytes:
    return V2_SIGNATURE + bytes((command, family)) + struct.pack("!H", len(block)) + block


def v2_inet(client: str, server: str, ports: tuple[int, int], tlvs: bytes = b"") -> bytes:
    block = socket.inet_aton(client) + socket.inet_aton(server) + struct.pack("!HH", *ports)
    return v2(0x21, 0x11, block + tlvs)


def measured(data: bytes, version: str) -> int | None:
    """The length as a reader learns it: fed one more byte each time, never overshooting."""
    for end in range(1, len(data) + 1):
        length = header_length(data[:end], version)
        if length is not None:
            return length
    return None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (V1_TCP4, ProxyHeader(("203.0.113.7", 4711), ("198.51.100.2", 443))),
        (V1_TCP6, ProxyHeader(("2001:db8::7", 4711), ("2001:db8::2", 8443))),
        (b"PROXY UNKNOWN\r\n", ProxyHeader()),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyHeader()),
    ],
)
def test_v1_headers_are_measured_and_parsed(header: bytes, expected: ProxyHeader) -> None:
    assert measured(header + b"GET / HTTP/1.1\r\n", "v1") == len(header)
    assert parse(header, "v1") == expected


def test_v2_inet_with_tlvs_after_the_addresses() -> None:
    tlv = b"\x01\x00\x02h2"  # PP2_TYPE_ALPN: read past, not needed
    header = v2_inet("203.0.113.7", "198.51.100.2", (4711, 443), tlv)
    assert measured(header + b"\x16\x03\x01", "v2") == len(header)
    assert parse(header, "v2") == ProxyHeader(("203.0.113.7", 4711), ("198.51.100.2", 443))


def test_v2_inet6_and_unix_addresses() -> None:
    client, server = socket.inet_pton(socket.AF_INET6, "2001:db8::7"), bytes(16)
    inet6 = v2(0x21, 0x21, client + server + struct.pack("!HH", 1, 2))
    assert parse(inet6, "v2") == ProxyHeader(("2001:db8::7", 1), ("::", 2))
    unix = v2(0x21, 0x31, b"/run/client".ljust(108, b"\0") + b"/run/osmium.sock".ljust(108, b"\0"))
    assert parse(unix, "v2") == ProxyHeader("/run/client", "/run/osmium.sock")


@pytest.mark.parametrize("header", [v2(0x20, 0x11, bytes(12)), v2(0x21, 0x00, b"")])
def test_v2_local_and_unspec_leave_the_connection_addresses(header: bytes) -> None:
    assert parse(header, "v2") == ProxyHeader()


@pytest.mark.parametrize(
    ("data", "version", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "v1", "expected a PROXY protocol v1 header"),
        (V2_SIGNATURE, "v1", "expected a PROXY protocol v1 header"),
        (V1_TCP4, "v2", "expected a PROXY protocol v2 header"),
        (b"PROXY TCP4 " + b"1" * 120, "v1", "longer than 107 bytes"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c", "v2", "unknown version/command"),
        (V2_SIGNATURE + b"\x11\x11\x00\x0c", "v2", "unknown version/command"),
    ],
)
def test_bytes_that_cannot_start_a_header_are_refused_early(
    data: bytes, version: str, reason: str
) -> None:
    with pytest.raises(ProxyHeaderError, match=reason):
        measured(data, version)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"PROXY TCP4 203.0.113.7 198.51.100.2 4711\r\n", "malformed"),
        (b"PROXY TCP4  203.0.113.7 198.51.100.2 4711 443\r\n", "malformed"),
        (b"PROXY UDP4 203.0.113.7 198.51.100.2 4711 443\r\n", "malformed"),
        (b"PROXY TCP4 2001:db8::7 198.51.100.2 4711 443\r\n", "not an IPv4 address"),
        (b"PROXY TCP6 203.0.113.7 2001:db8::2 4711 443\r\n", "not an IPv6 address"),
        (b"PROXY TCP4 example.org 198.51.100.2 4711 443\r\n", "not an IP address"),
        (b"PROXY TCP4 203.0.113.7 198.51.100.2 65536 443\r\n", "not a port"),
        (b"PROXY TCP4 203.0.113.7 198.51.100.2 -1 443\r\n", "not a port"),
        (b"PROXY TCP4 203.0.113.7 198.51.100.2 \xd9\xa1 443\r\n", "not ASCII"),
    ],
)
def test_malformed_v1_headers(header: bytes, reason: str) -> None:
    assert header_length(header, "v1") == len(header)
    with pytest.raises(ProxyHeaderError, match=reason):
        parse(header, "v1")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (v2(0x21, 0x11, bytes(8)), "8 address bytes, 12 needed"),
        (v2(0x21, 0x21, bytes(12)), "12 address bytes, 36 needed"),
        (v2(0x21, 0x12, bytes(12)), "unsupported family/transport byte 0x12"),
        (v2(0x21, 0x41, bytes(12)), "unsupported family/transport byte 0x41"),
    ],
)
def test_malformed_v2_headers(header: bytes, reason: str) -> None:
    assert header_length(header, "v2") == len(header)
    with pytest.raises(ProxyHeaderError, match=reason):
        parse(header, "v2")
