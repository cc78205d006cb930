"""TLS back-ends behind one small interface: settings in, what the listener needs out.

A back-end returns a `Listener`: either an `ssl.SSLContext` for asyncio's own TLS (stdlib), or a
wrapper around the connection protocol factory that terminates TLS itself (pyOpenSSL), or both.
Whatever terminates TLS exposes `transport.get_extra_info("ssl_object")` with three methods the
server uses: `selected_alpn_protocol()`, `version()` and `cipher()` (as `ssl.SSLObject` has them),
and for the admin plane, where known, `server_name_indicated` (the client's SNI).
With client certificates (`TLSSettings.verify_client`), the same object also feeds the ASGI `tls`
extension: see osmium/tls/scope.py for what it may expose.
A third-party back-end is named by dotted path: `--tls-backend package.module:Class`.
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

ProtocolFactory = Callable[[], asyncio.Protocol]

#: RFC 9113 §9.2.2: TLS 1.2 with HTTP/2 needs ephemeral key exchange and an AEAD cipher.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
ALPN_PROTOCOLS = ("h2", "http/1.1")


class TLSConfigError(Exception):
    """Certificate or key files that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class TLSSettings:
    certfile: str
    keyfile: str
    #: Password of an encrypted private key (PEM).
    password: str | None = None
    #: Other certificates chosen by SNI server name: host name -> (certfile, keyfile).
    sni: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites are all acceptable).
    ciphers: str = TLS12_CIPHERS
    alpn: tuple[str, ...] = ALPN_PROTOCOLS
    #: A client that has not finished its handshake by then is dropped.
    handshake_timeout: float = 60.0
    #: CA certificates (PEM) that client certificates must chain to.
    ca_certs: str | None = None
    #: Client certificates: "none" (not asked for), "optional" (asked for; a client without one
    #: is served), "required" (a client without a valid one fails the handshake).
    verify_client: str = "none"


@dataclass(frozen=True)
class Listener:
    """What `loop.create_server` gets: an SSLContext, and/or a protocol factory wrapper."""

    ssl_context: ssl.SSLContext | None = None
    wrap: Callable[[ProtocolFactory], ProtocolFactory] = lambda factory: factory


class TLSBackend(Protocol):
    name: str

    def listener(self, settings: TLSSettings) -> Listener:
        """Load and check everything now: a bad file is a TLSConfigError before serving."""
        ...


def first_certificate_pem(certfile: str) -> str | None:
    """The server's own certificate (the first in its file), as the `tls` extension reports it."""
    with open(certfile, encoding="ascii", errors="replace") as pem:
        text = pem.read()
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        return None
    return text[begin : end + len("-----END CERTIFICATE-----")] + "\n"


VERIFY_CLIENT = ("none", "optional", "required")
BUILT_IN = {
    "stdlib": "osmium.tls.stdlib:StdlibTLS",
    "pyopenssl": "osmium.tls.pyopenssl:PyOpenSSLTLS",
}
#: The extra that installs what a built-in back-end imports.
EXTRAS = {"pyopenssl": "pyopenssl"}


def load_backend(name: str) -> TLSBackend:
    """`stdlib`, `pyopenssl`, or `package.module:Class` for a third-party back-end."""
    target = BUILT_IN.get(name, name)
    module_name, _, attribute = target.partition(":")
    if not attribute:
        known = ", ".join(BUILT_IN)
        raise TLSConfigError(f"unknown TLS back-end {name!r} ({known}, or package.module:Class)")
    try:
        backend_class = getattr(importlib.import_module(module_name), attribute)
    except ImportError as error:
        if name in EXTRAS:
            raise TLSConfigError(
                f"TLS back-end {name!r} needs {error.name or 'a missing package'}: "
                f"pip install 'osmium[{EXTRAS[name]}]'"
            ) from None
        raise TLSConfigError(f"TLS back-end {name!r} cannot be imported: {error}") from None
    except AttributeError:
        raise TLSConfigError(f"TLS back-end {name!r}: {module_name} has no {attribute}") from None
    return backend_class()
