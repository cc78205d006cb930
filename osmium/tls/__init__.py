"""TLS back-ends behind one small interface: certificate paths in, a server-side context out."""

from __future__ import annotations

import ssl
from typing import Protocol


class TLSConfigError(Exception):
    """Certificate or key files that cannot be used; the message names the file and the reason."""


class TLSBackend(Protocol):
    name: str

    def server_context(self, certfile: str, keyfile: str) -> ssl.SSLContext: ...


def load_backend(name: str) -> TLSBackend:
    if name == "stdlib":
        from osmium.tls.stdlib import StdlibTLS

        return StdlibTLS()
    raise TLSConfigError(f"unknown TLS back-end {name!r} (available: stdlib)")
