"""The HAProxy PROXY protocol header (v1 text, v2 binary): the addresses of the proxy's client.

A proxy that passes TCP through (HAProxy `send-proxy`, AWS NLB, nginx `proxy_protocol on`) writes
one header ahead of the client's bytes; TLS, if any, starts after it. `header_length` finds where
the header ends as its bytes arrive, so that a reader takes exactly the header and leaves the
client's first bytes (a TLS ClientHello, say) to whoever comes next; `parse` reads a whole one.

Written here rather than taken from a library: the one on PyPI parses only whole headers from
asyncio streams, and the spec's framing and checks fit in this module.
Spec: https://www.haproxy.org/download/3.0/doc/proxy-protocol.txt
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

VERSIONS = ("v1", "v2")
V1_PREFIX = b"PROXY "
#: The longest v1 header: "PROXY TCP6 " + two full IPv6 addresses and ports + CRLF (spec §2.1).
V1_MAX_LENGTH = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: Signature, version/command, family/transport, length of what follows.
V2_FIXED_LENGTH = 16
V2_LOCAL, V2_PROXY = 0x20, 0x21
#: Address family (high nibble) with STREAM (low nibble 1) -> the address block's layout.
V2_INET, V2_INET6, V2_UNIX = 0x11, 0x21, 0x31
V2_UNSPEC = 0x00
_INET = struct.Struct("!4s4sHH")
_INET6 = struct.Struct("!16s16sHH")
_UNIX = struct.Struct("!108s108s")

#: What the header says of one end: (host, port) for TCP, a path for a unix socket.
Address = tuple[str, int] | str


class ProxyHeaderError(ValueError):
    """Not a valid PROXY header of the version served; the connection is closed."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """The client's address and the one it connected to; both None when the header carries
    none (v1 UNKNOWN, v2 LOCAL such as the proxy's health checks, v2 UNSPEC): then the
    connection's own addresses stand."""

    client: Address | None = None
    server: Address | None = None


def header_length(data: bytes, version: str) -> int | None:
    """The header's length once `data` shows it, None while more bytes are needed; raises
    ProxyHeaderError as soon as the bytes cannot start a header of `version`."""
    if version == "v1":
        return _v1_length(data)
    return _v2_length(data)


def parse(header: bytes, version: str) -> ProxyHeader:
    """The addresses of a whole header (as measured by `header_length`)."""
    if version == "v1":
        return _parse_v1(header)
    return _parse_v2(header)


def _v1_length(data: bytes) -> int | None:
    if not data.startswith(V1_PREFIX[: len(data)]):
        raise ProxyHeaderError(f"expected a PROXY protocol v1 header, got {data[:16]!r}")
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end >= 0:
        return end + 2
    if len(data) >= V1_MAX_LENGTH:
        raise ProxyHeaderError(f"PROXY v1 header longer than {V1_MAX_LENGTH} bytes")
    return None


def _v2_length(data: bytes) -> int | None:
    if not data.startswith(V2_SIGNATURE[: len(data)]):
        raise ProxyHeaderError(f"expected a PROXY protocol v2 header, got {data[:16]!r}")
    if len(data) < V2_FIXED_LENGTH:
        return None
    if data[12] not in (V2_LOCAL, V2_PROXY):
        raise ProxyHeaderError(f"PROXY v2: unknown version/command byte 0x{data[12]:02x}")
    (length,) = struct.unpack_from("!H", data, 14)
    return V2_FIXED_LENGTH + length


def _parse_v1(header: bytes) -> ProxyHeader:
    try:
        text = header[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 header is not ASCII") from None
    parts = text.split(" ")
    if parts[:2] == ["PROXY", "UNKNOWN"]:
        return ProxyHeader()
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"malformed PROXY v1 header {text!r}")
    version = 4 if parts[1] == "TCP4" else 6
    client = _v1_address(parts[2], parts[4], version)
    server = _v1_address(parts[3], parts[5], version)
    return ProxyHeader(client, server)


def _v1_address(host: str, port: str, version: int) -> tuple[str, int]:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ProxyHeaderError(f"PROXY v1: {host!r} is not an IP address") from None
    if address.version != version:
        raise ProxyHeaderError(f"PROXY v1: {host!r} is not an IPv{version} address")
    if not (port.isdigit() and port.isascii() and int(port) <= 65535):
        raise ProxyHeaderError(f"PROXY v1: {port!r} is not a port")
    return str(address), int(port)


def _parse_v2(header: bytes) -> ProxyHeader:
    if header[12] == V2_LOCAL:
        return ProxyHeader()
    family = header[13]
    block = header[V2_FIXED_LENGTH:]
    if family == V2_UNSPEC:
        return ProxyHeader()
    layout = {V2_INET: _INET, V2_INET6: _INET6, V2_UNIX: _UNIX}.get(family)
    if layout is None:
        raise ProxyHeaderError(f"PROXY v2: unsupported family/transport byte 0x{family:02x}")
    if len(block) < layout.size:
        raise ProxyHeaderError(f"PROXY v2: {len(block)} address bytes, {layout.size} needed")
    fields = layout.unpack_from(block)
    if family == V2_UNIX:
        return ProxyHeader(_unix_path(fields[0]), _unix_path(fields[1]))
    client_host, server_host, client_port, server_port = fields
    return ProxyHeader(
        (str(ipaddress.ip_address(client_host)), client_port),
        (str(ipaddress.ip_address(server_host)), server_port),
    )


def _unix_path(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
