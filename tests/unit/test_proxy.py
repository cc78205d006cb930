"""`osmium.proxy`: whom forwarded fields are believed from, how far back, and what they change."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from osmium.config import Config
from osmium.proxy import (
    Hop,
    ProxyMiddleware,
    TrustedProxies,
    apply_forwarded,
    apply_root_path,
    parse_forwarded,
    parse_host,
    parse_node,
    root_path_problem,
    wrap_app,
    x_forwarded_hops,
)

PROXY = ("127.0.0.1", 50000)
STRANGER = ("198.51.100.9", 40000)


def scope_from(
    peer: tuple[str, int] | None, *headers: tuple[str, str], kind: str = "http"
) -> dict[str, Any]:
    """A scope as the server builds it for a cleartext request to 127.0.0.1:8000."""
    return {
        "type": kind,
        "scheme": "ws" if kind == "websocket" else "http",
        "path": "/items",
        "raw_path": b"/items",
        "root_path": "",
        "headers": [(name.encode(), value.encode("latin-1")) for name, value in headers],
        "client": peer,
        "server": ("127.0.0.1", 8000),
    }


def forwarded(
    peer: tuple[str, int] | None,
    *headers: tuple[str, str],
    trust: str = "127.0.0.1",
    kind: str = "http",
) -> dict[str, Any]:
    scope = scope_from(peer, *headers, kind=kind)
    apply_forwarded(scope, TrustedProxies(trust))
    return scope


# -- the trust list --------------------------------------------------------------------------------


def test_addresses_and_networks_of_both_families_are_trusted() -> None:
    trusted = TrustedProxies("127.0.0.1, 10.0.0.0/8, ::1, 2001:db8::/32, 192.0.2.7/32")
    for address in ("127.0.0.1", "10.20.30.40", "::1", "2001:db8::5", "192.0.2.7"):
        assert address in trusted, address
    for address in ("127.0.0.2", "11.0.0.1", "::2", "2001:db9::1", "unknown", "", "_hidden"):
        assert address not in trusted, address


def test_other_spellings_of_a_trusted_address_are_trusted() -> None:
    trusted = TrustedProxies("::1, 10.0.0.1")
    assert "0:0:0:0:0:0:0:1" in trusted
    assert "::ffff:10.0.0.1" in trusted  # what a dual-stack socket reports for IPv4
    assert "::ffff:10.0.0.2" not in trusted


def test_star_trusts_every_peer() -> None:
    trusted = TrustedProxies(" * ")
    assert "203.0.113.1" in trusted and "2001:db8::1" in trusted


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty entry"),
        ("10.0.0.1,", "empty entry"),
        ("10.0.0.1, *", "must stand alone"),
        ("10.0.0.300", "'10.0.0.300' is not an IP address or network"),
        ("proxy.internal", "'proxy.internal' is not an IP address"),
        ("10.0.0.1/8", "has host bits set"),
        ("10.0.0.0/33", "does not appear to be an IPv4 or IPv6 network"),
    ],
)
def test_bad_entries_are_refused_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        TrustedProxies(spec)
    assert "\n" not in str(raised.value)


# -- parsing ---------------------------------------------------------------------------------------


def test_forwarded_elements_with_quoted_ipv6_and_ports() -> None:
    value = (
        'for="[2001:db8:cafe::17]:4711";proto=https;host="example.com:8443", '
        "For=192.0.2.43;by=203.0.113.60 ,for=unknown"
    )
    assert parse_forwarded(value) == [
        Hop("[2001:db8:cafe::17]:4711", "https", "example.com:8443"),
        Hop("192.0.2.43"),
        Hop("unknown"),
    ]


def test_forwarded_quoted_pairs_and_empty_list_items() -> None:
    assert parse_forwarded(r'for="_a\"b";;proto=http, ,') == [Hop('_a"b', "http")]
    assert parse_forwarded("proto=https;") == [Hop(None, "https")]
    assert parse_forwarded("") == []


@pytest.mark.parametrize(
    "value",
    [
        'for="192.0.2.1',  # quote never closed
        "for=192.0.2.1;for=192.0.2.2",  # a parameter twice in one element
        "for 192.0.2.1",
        "=192.0.2.1",
        'for=192.0.2.1"x"',
        "for=a b",
        "for=192.0.2.1\n, for=10.0.0.1",
    ],
)
def test_malformed_forwarded_fields_parse_to_none(value: str) -> None:
    assert parse_forwarded(value) is None


@pytest.mark.parametrize(
    ("node", "address"),
    [
        ("192.0.2.1", ("192.0.2.1", 0)),
        (" 192.0.2.1:4711 ", ("192.0.2.1", 4711)),
        ("2001:DB8::1", ("2001:db8::1", 0)),
        ("[2001:db8::1]", ("2001:db8::1", 0)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("192.0.2.1:_port", ("192.0.2.1", 0)),
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]443", None),
        ("192.0.2.1:65536", None),
        ("192.0.2.1:http", None),
        ("example.com", None),
    ],
)
def test_nodes(node: str, address: tuple[str, int] | None) -> None:
    parsed = parse_node(node)
    assert (parsed and (str(parsed[0]), parsed[1])) == address


@pytest.mark.parametrize(
    ("host", "server"),
    [
        ("Example.COM", ("example.com", 443)),
        ("example.com:8443", ("example.com", 8443)),
        ("[2001:db8::1]:8080", ("2001:db8::1", 8080)),
        ("192.0.2.1", ("192.0.2.1", 443)),
        ("", None),
        ("a b", None),
        ("example.com:99999", None),
        ("[not-ipv6]:80", None),
        ("example.com/path", None),
    ],
)
def test_hosts(host: str, server: tuple[str, int] | None) -> None:
    assert parse_host(host, 443) == server


def test_x_forwarded_lists_are_matched_from_the_right() -> None:
    assert x_forwarded_hops("203.0.113.7, 10.0.0.2", "https, http", "shop.example, lb") == [
        Hop("203.0.113.7", "https", "shop.example"),
        Hop("10.0.0.2", "http", "lb"),
    ]
    # One proto for three hops (each proxy overwrote it): every hop gets it.
    assert [hop.proto for hop in x_forwarded_hops("a, b, c", "https", None)] == ["https"] * 3
    assert x_forwarded_hops(None, "https", "shop.example") == [Hop(None, "https", "shop.example")]


# -- the hop rule ----------------------------------------------------------------------------------


def test_x_forwarded_for_skips_trusted_proxies_from_the_right() -> None:
    chain = ("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.2, 10.0.0.3")
    scope = forwarded(PROXY, chain, trust="127.0.0.1, 10.0.0.0/8")
    # 198.51.100.1 was written by the client itself: only 203.0.113.7's proxy is vouched for.
    assert scope["client"] == ("203.0.113.7", 0)


def test_with_every_hop_trusted_the_leftmost_is_the_client() -> None:
    scope = forwarded(
        PROXY, ("x-forwarded-for", "10.0.0.5, 10.0.0.2"), trust="127.0.0.1,10.0.0.0/8"
    )
    assert scope["client"] == ("10.0.0.5", 0)
    scope = forwarded(PROXY, ("x-forwarded-for", "203.0.113.1, 203.0.113.2"), trust="*")
    assert scope["client"] == ("203.0.113.1", 0)


def test_forwarded_sets_client_scheme_and_server_from_the_clients_hop() -> None:
    value = (
        'for=192.0.2.1, for="[2001:db8::7]:4711";proto=https;host=shop.example, '
        "for=10.0.0.2;proto=http;host=backend"
    )
    scope = forwarded(PROXY, ("forwarded", value), trust="127.0.0.1, 10.0.0.0/8")
    assert scope["client"] == ("2001:db8::7", 4711)
    assert scope["scheme"] == "https"
    assert scope["server"] == ("shop.example", 443)


def test_forwarded_wins_over_x_forwarded() -> None:
    scope = forwarded(
        PROXY,
        ("x-forwarded-for", "203.0.113.50"),
        ("x-forwarded-proto", "http"),
        ("forwarded", "for=203.0.113.7;proto=https"),
    )
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "https"


def test_repeated_fields_are_one_list() -> None:
    scope = forwarded(
        PROXY,
        ("forwarded", "for=198.51.100.1"),
        ("forwarded", "for=203.0.113.7, for=10.0.0.2"),
        trust="127.0.0.1, 10.0.0.2",
    )
    assert scope["client"] == ("203.0.113.7", 0)


def test_x_forwarded_proto_and_host() -> None:
    scope = forwarded(
        PROXY,
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "HTTPS"),
        ("x-forwarded-host", "shop.example:8443"),
    )
    assert scope["client"] == ("203.0.113.7", 0)
    assert (scope["scheme"], scope["server"]) == ("https", ("shop.example", 8443))
    plain = forwarded(PROXY, ("x-forwarded-proto", "http"), ("x-forwarded-host", "shop.example"))
    assert (plain["scheme"], plain["server"], plain["client"]) == (
        "http",
        ("shop.example", 80),
        PROXY,
    )


def test_websocket_schemes() -> None:
    secure = forwarded(PROXY, ("x-forwarded-proto", "https"), kind="websocket")
    assert secure["scheme"] == "wss"
    plain = forwarded(PROXY, ("forwarded", "proto=ws;host=chat.example"), kind="websocket")
    assert (plain["scheme"], plain["server"]) == ("ws", ("chat.example", 80))
    wss_for_http = forwarded(PROXY, ("x-forwarded-proto", "wss"))
    assert wss_for_http["scheme"] == "https"


@pytest.mark.parametrize("node", ["unknown", "_hidden", '"_hidden:_port"'])
def test_unknown_and_obfuscated_clients_leave_the_client_but_not_the_rest(node: str) -> None:
    scope = forwarded(PROXY, ("forwarded", f"for={node};proto=https;host=shop.example"))
    assert scope["client"] == PROXY
    assert (scope["scheme"], scope["server"]) == ("https", ("shop.example", 443))


def test_an_unknown_hop_ends_the_walk() -> None:
    # What lies left of `unknown` came through a hop nobody can vouch for.
    scope = forwarded(PROXY, ("forwarded", "for=198.51.100.1;proto=https, for=unknown"))
    assert (scope["client"], scope["scheme"]) == (PROXY, "http")


def test_an_untrusted_peer_is_left_untouched() -> None:
    headers = [
        ("forwarded", "for=203.0.113.7;proto=https;host=shop.example"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
    ]
    scope = forwarded(STRANGER, *headers)
    assert scope == scope_from(STRANGER, *headers)  # nothing changed, fields kept too
    assert forwarded(PROXY, *headers, trust="10.0.0.1")["client"] == PROXY


def test_a_unix_socket_peer_is_trusted() -> None:
    scope = forwarded(None, ("x-forwarded-for", "203.0.113.7"), trust="10.0.0.1")
    assert scope["client"] == ("203.0.113.7", 0)


@pytest.mark.parametrize(
    "headers",
    [
        [("forwarded", 'for="203.0.113.7'), ("x-forwarded-for", "203.0.113.9")],
        [("x-forwarded-for", "")],
        [("x-forwarded-for", " , ,")],
        [("x-forwarded-for", "not-an-address")],
        [("x-forwarded-proto", "gopher"), ("x-forwarded-host", "bad host")],
        [("forwarded", "for=;proto=;host=")],
    ],
)
def test_malformed_fields_change_nothing(headers: list[tuple[str, str]]) -> None:
    assert forwarded(PROXY, *headers) == scope_from(PROXY, *headers)


FIELD_NAMES = st.sampled_from(
    ["forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]
)
FIELD_TEXT = st.text(
    alphabet=st.sampled_from('abf:=;,"\\[]_ 0123456789.proHOSTunkw\t'), max_size=60
)


@given(
    st.lists(st.tuples(FIELD_NAMES, FIELD_TEXT), max_size=4), st.sampled_from(["http", "websocket"])
)
def test_any_field_content_leaves_a_well_formed_scope(
    headers: list[tuple[str, str]], kind: str
) -> None:
    scope = forwarded(PROXY, *headers, trust="127.0.0.1, 10.0.0.0/8", kind=kind)
    host, port = scope["client"]
    assert isinstance(host, str) and isinstance(port, int)
    expected = {"ws", "wss"} if kind == "websocket" else {"http", "https"}
    assert scope["scheme"] in expected
    assert 0 <= scope["server"][1] <= 65535


# -- root_path and the middleware ------------------------------------------------------------------


def test_root_path_prefixes_path_and_raw_path() -> None:
    scope = scope_from(PROXY)
    scope["path"], scope["raw_path"] = "/a b", b"/a%20b"
    middleware = ProxyMiddleware(record_scope, None, "/my app")
    asyncio.run(middleware(scope, receive_nothing, send_nothing))
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/my app",
        "/my app/a b",
        b"/my%20app/a%20b",
    )


def test_root_path_without_raw_path() -> None:
    scope = scope_from(PROXY)
    del scope["raw_path"]
    apply_root_path(scope, "/api", b"/api")
    assert (scope["path"], "raw_path" in scope) == ("/api/items", False)


@pytest.mark.parametrize(("root_path", "ok"), [("", True), ("/api", True), ("/a/b", True)])
def test_good_root_paths(root_path: str, ok: bool) -> None:
    assert (root_path_problem(root_path) is None) == ok


@pytest.mark.parametrize("root_path", ["/", "api", "/api/", "api/"])
def test_bad_root_paths(root_path: str) -> None:
    problem = root_path_problem(root_path)
    assert problem is not None and repr(root_path) in problem


SEEN: list[dict[str, Any]] = []


async def record_scope(scope: Any, receive: Any, send: Any) -> None:
    SEEN.append(dict(scope))


async def receive_nothing() -> dict[str, Any]:
    raise AssertionError("the middleware must not receive")


async def send_nothing(message: Any) -> None:
    raise AssertionError("the middleware must not send")


def test_the_middleware_rewrites_requests_and_passes_lifespan_through() -> None:
    SEEN.clear()
    app = wrap_app(record_scope, Config(proxy_headers=True, root_path="/api"))
    request = scope_from(PROXY, ("x-forwarded-for", "203.0.113.7"), kind="websocket")
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "client": PROXY}
    asyncio.run(app(request, receive_nothing, send_nothing))
    asyncio.run(app(dict(lifespan), receive_nothing, send_nothing))
    assert SEEN[0]["client"] == ("203.0.113.7", 0)
    assert (SEEN[0]["path"], SEEN[0]["root_path"]) == ("/api/items", "/api")
    assert SEEN[1] == lifespan


def test_a_plain_server_serves_the_app_itself() -> None:
    assert wrap_app(record_scope, Config()) is record_scope
    only_root = wrap_app(record_scope, Config(root_path="/api"))
    assert isinstance(only_root, ProxyMiddleware) and only_root.trusted is None
