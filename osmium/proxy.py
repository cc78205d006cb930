"""Serving behind a reverse proxy: the client, scheme and host a trusted proxy forwarded, and
the path prefix the app is mounted under (`--proxy-headers`, `--forwarded-allow-ips`,
`--root-path`; README: Behind a proxy).

Anyone can send a `Forwarded` or `X-Forwarded-For` header, so they are believed only from a
peer in the trust list, and only as far back as the chain of trusted proxies goes: the list is
walked from the right (each proxy appends what it saw), past addresses that are trusted proxies
themselves, and the first other entry is the client. The server wraps the app in
`ProxyMiddleware` only when one of the settings is on: a plain server pays nothing.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote

from osmium.asgi import PATH_SAFE, ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from osmium.config import Config

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[str, int]

#: The scopes a proxy forwards; lifespan has no peer and no path.
REQUEST_SCOPES = frozenset({"http", "websocket"})
FORWARDED = b"forwarded"
X_FORWARDED_FOR = b"x-forwarded-for"
X_FORWARDED_PROTO = b"x-forwarded-proto"
X_FORWARDED_HOST = b"x-forwarded-host"
FORWARDING_FIELDS = frozenset({FORWARDED, X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST})
#: A forwarded proto (RFC 7239 §5.4: a URI scheme) -> whether the client's connection was secure.
SECURE_BY_PROTO = {"http": False, "https": True, "ws": False, "wss": True}

#: One forwarded-pair (RFC 7239 §4) and what follows it: `;` (next pair), `,` (next element) or
#: the end. Pairs may be empty (`for=a;;proto=b`, `, ,`), as the list rules of RFC 9110 §5.6.1
#: allow; whitespace is tolerated around separators only. Adjacent parts match disjoint
#: characters (no backtracking between them), so a long field fails in linear time.
_PAIR = re.compile(
    r"""[ \t]*(?:([!#$%&'*+.^_`|~0-9A-Za-z-]+)=("(?:[^"\\]|\\.)*"|[^\s",;]*)[ \t]*)?([,;]|\Z)"""
)
_QUOTED_PAIR = re.compile(r"\\(.)")
#: node-port (RFC 7239 §6): digits, or an obfuscated port such as `_gazonk`.
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
#: A forwarded host (RFC 7239 §5.3, RFC 9110 §7.2): reg-name or IPv4 or [IPv6], then a port.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%!$&'()*+;=-]+)(?::([0-9]{1,5}))?")


class TrustedProxies:
    """The peers whose forwarded headers are believed, parsed once from `--forwarded-allow-ips`:
    a comma-separated list of addresses and CIDR networks, IPv4 and IPv6, or `*` for any peer.

    A peer written as the list has it (what the socket gives) is found with one set lookup;
    other spellings, IPv4-mapped IPv6 and networks go through `parse_ip`, which caches.
    """

    __slots__ = ("addresses", "any", "networks", "texts")

    def __init__(self, spec: str) -> None:
        entries = [entry.strip() for entry in spec.split(",")]
        self.any = entries == ["*"]
        addresses: set[IPAddress] = set()
        networks: list[IPNetwork] = []
        for entry in [] if self.any else entries:
            if not entry:
                raise ValueError(f"empty entry in {spec!r}")
            if entry == "*":
                raise ValueError(f"* means any peer and must stand alone, not in {spec!r}")
            if "/" in entry:
                network = _network(entry)
                if network.num_addresses == 1:
                    addresses.add(network.network_address)
                else:
                    networks.append(network)
            else:
                addresses.add(_address(entry))
        self.addresses = frozenset(addresses)
        self.networks = tuple(networks)
        self.texts = frozenset(str(address) for address in addresses)

    def __contains__(self, host: str) -> bool:
        """Whether the peer `host` (an address as text, as in scope["client"]) is trusted."""
        if self.any or host in self.texts:
            return True
        address = parse_ip(host)
        return address is not None and self.holds(address)

    def holds(self, address: IPAddress) -> bool:
        """Whether `address` is trusted; an IPv4-mapped IPv6 one counts as its IPv4 address."""
        if self.any:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address in self.addresses or any(address in network for network in self.networks)


def _network(entry: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(entry)
    except ValueError as error:  # "'10.0.0.1/8' has host bits set", "... is not a network"
        raise ValueError(str(error)) from None


def _address(entry: str) -> IPAddress:
    address = parse_ip(entry)
    if address is None:
        raise ValueError(f"{entry!r} is not an IP address or network (or *)")
    return address


@functools.lru_cache(maxsize=4096)
def parse_ip(text: str) -> IPAddress | None:
    """`text` as an address, or None. Cached: a proxy's and its clients' addresses come back
    request after request, and ipaddress takes microseconds to parse one."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class Hop(NamedTuple):
    """What one proxy reported of the request it received: who sent it (`node`, as written),
    over which protocol, for which host. None: not reported."""

    node: str | None
    proto: str | None = None
    host: str | None = None


def parse_forwarded(value: str) -> list[Hop] | None:
    """The elements of a `Forwarded` field (RFC 7239 §4), left to right; None if it is malformed
    (a bad pair, an unclosed quote, a parameter twice in one element)."""
    hops: list[Hop] = []
    element: dict[str, str] = {}
    position, end = 0, len(value)
    while position < end:
        match = _PAIR.match(value, position)
        if match is None:
            return None
        name, text, separator = match.groups()
        if name is not None:
            name = name.lower()
            if name in element:
                return None
            if text.startswith('"'):
                text = _QUOTED_PAIR.sub(r"\1", text[1:-1])
            element[name] = text
        if separator != ";":
            _end_element(hops, element)
        position = match.end()
    _end_element(hops, element)  # after a last `;`
    return hops


def _end_element(hops: list[Hop], element: dict[str, str]) -> None:
    if element:
        hops.append(Hop(element.get("for"), element.get("proto"), element.get("host")))
        element.clear()


def x_forwarded_hops(forwarded_for: str | None, proto: str | None, host: str | None) -> list[Hop]:
    """`X-Forwarded-For`, `-Proto` and `-Host` as hops, left to right. Each proxy appends to the
    lists it keeps, so they are matched from the right; a shorter list (a proxy that overwrites
    rather than appends) gives its leftmost entry to the hops beyond it."""
    nodes = _items(forwarded_for) if forwarded_for is not None else [None]
    protos, hosts = _items(proto), _items(host)
    count = len(nodes)
    return [
        Hop(node, _from_right(protos, count - 1 - index), _from_right(hosts, count - 1 - index))
        for index, node in enumerate(nodes)
    ]


def _items(value: str | None) -> list[str]:
    return [] if value is None else [item.strip() for item in value.split(",")]


def _from_right(items: list[str], hops_back: int) -> str | None:
    if not items:
        return None
    return items[max(len(items) - 1 - hops_back, 0)]


def parse_node(node: str) -> tuple[IPAddress, int] | None:
    """The client address in a `for=` node or an `X-Forwarded-For` entry: `192.0.2.1`,
    `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`; port 0 when none (or obfuscated).
    None for what is not an address: `unknown`, an obfuscated `_name` (RFC 7239 §6), garbage."""
    host, port_text = node.strip(), ""
    if host.startswith("["):
        host, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:]
    elif host.count(":") == 1:
        host, _, port_text = host.partition(":")
    address = parse_ip(host)
    port = _port(port_text)
    if address is None or port is None:
        return None
    return address, port


def _port(text: str) -> int | None:
    if not text or _OBFUSCATED.fullmatch(text):
        return 0
    if text.isascii() and text.isdigit() and int(text) <= 65535:
        return int(text)
    return None


def parse_host(value: str, default_port: int) -> Address | None:
    """The `server` a forwarded host names: `example.com`, `example.com:8443`, `[::1]:8080`."""
    match = _HOST.fullmatch(value.strip())
    if match is None:
        return None
    host, port = match[1].lower(), int(match[2]) if match[2] else default_port
    if host.startswith("["):
        host = host[1:-1]
        if parse_ip(host) is None:
            return None
    return (host, port) if port <= 65535 else None


def choose_hop(hops: list[Hop], trusted: TrustedProxies) -> tuple[Hop, Address | None]:
    """The hop that names the client, and its address: walking from the right (the nearest
    proxy), the first whose node is not a trusted address. A node that is no address (`unknown`,
    `_hidden`, none) ends the walk too: what lies to its left came through a hop nobody vouches
    for. If every node is trusted, the leftmost is the client. `hops`: at least one."""
    node = None
    for hop in reversed(hops):
        node = parse_node(hop.node) if hop.node is not None else None
        if node is None or not trusted.holds(node[0]):
            break
    else:
        hop = hops[0]  # every node trusted: the walk ended on it, `node` is its own
    return hop, None if node is None else (str(node[0]), node[1])


def forwarding_hops(headers: Iterable[tuple[bytes, bytes]]) -> list[Hop]:
    """The hops the request's fields report: `Forwarded` when there is one (a malformed one
    reports nothing), else the `X-Forwarded-*` fields. Repeated fields count as one list."""
    fields: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        if name in FORWARDING_FIELDS:
            fields.setdefault(name, []).append(value)
    if not fields:
        return []
    if FORWARDED in fields:
        return parse_forwarded(_joined(fields[FORWARDED])) or []
    forwarded_for, proto, host = (
        _joined(fields[name]) if name in fields else None
        for name in (X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST)
    )
    return x_forwarded_hops(forwarded_for, proto, host)


def _joined(values: list[bytes]) -> str:
    return b",".join(values).decode("latin-1")


def apply_forwarded(scope: Scope, trusted: TrustedProxies) -> None:
    """Set the scope's client, scheme and server from what a trusted peer forwarded; a request
    from any other peer is left as it is (its forwarded fields stay, unread). A peer on a unix
    socket (no client address) is trusted, as gunicorn does: only processes the socket file's
    mode lets in can connect, the same machine as a loopback peer."""
    peer = scope.get("client")
    if peer is not None and peer[0] not in trusted:
        return
    hops = forwarding_hops(scope["headers"])
    if not hops:
        return
    hop, client = choose_hop(hops, trusted)
    if client is not None:
        scope["client"] = client
    secure = SECURE_BY_PROTO.get(hop.proto.strip().lower()) if hop.proto is not None else None
    if secure is not None:
        if scope["type"] == "websocket":
            scope["scheme"] = "wss" if secure else "ws"
        else:
            scope["scheme"] = "https" if secure else "http"
    if hop.host is not None:
        default_port = 443 if scope["scheme"] in ("https", "wss") else 80
        server = parse_host(hop.host, default_port)
        if server is not None:
            scope["server"] = server


def apply_root_path(scope: Scope, root_path: str, raw_root_path: bytes) -> None:
    """Mount the app at `root_path`. The ASGI spec (www.rst: "PATH_INFO can be derived by
    stripping root_path from path") has `path` be the full path, prefix included, and frameworks
    route on `path` minus `root_path` (Starlette 0.35+); the proxy has stripped the prefix from
    what it sends, so it is put back, in `raw_path` too. uvicorn does the same since 0.26."""
    scope["root_path"] = root_path
    scope["path"] = root_path + scope["path"]
    raw_path = scope.get("raw_path")
    if raw_path is not None:
        scope["raw_path"] = raw_root_path + raw_path


def root_path_problem(root_path: str) -> str | None:
    """Why `root_path` cannot be a mount point, or None: it is empty or `/a/b` (no slash last)."""
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        return f"root_path {root_path!r} must start with / and not end with / (or be empty)"
    return None


class ProxyMiddleware:
    """The app, with forwarded fields applied (when `trusted` is set) and mounted at
    `root_path` (when not empty); lifespan passes through untouched."""

    __slots__ = ("app", "raw_root_path", "root_path", "trusted")

    def __init__(self, app: ASGIApp, trusted: TrustedProxies | None, root_path: str) -> None:
        self.app = app
        self.trusted = trusted
        self.root_path = root_path
        self.raw_root_path = quote(root_path, safe=PATH_SAFE).encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in REQUEST_SCOPES:
            if self.trusted is not None:
                apply_forwarded(scope, self.trusted)
            if self.root_path:
                apply_root_path(scope, self.root_path, self.raw_root_path)
        await self.app(scope, receive, send)


def wrap_app(app: ASGIApp, config: Config) -> ASGIApp:
    """`app` in a ProxyMiddleware when --proxy-headers or --root-path asks for one, else as is."""
    if not (config.proxy_headers or config.root_path):
        return app
    trusted = TrustedProxies(config.forwarded_allow_ips) if config.proxy_headers else None
    return ProxyMiddleware(app, trusted, config.root_path)
