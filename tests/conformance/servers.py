"""The servers the conformance suite talks to: cleartext, or TLS with a chosen back-end.

`OSMIUM_CONFORMANCE_TLS=stdlib` (or `pyopenssl`) runs every conformance server over TLS with
that back-end and every raw client over TLS with ALPN h2; the nox `tests` session runs the
suite once per transport. Certificates are made at test time, never stored.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import trustme

from tests.server_process import ServerProcess, running_server

TLS_BACKEND = os.environ.get("OSMIUM_CONFORMANCE_TLS")


@cache
def _certificates() -> tuple[str, str]:
    folder = Path(tempfile.mkdtemp(prefix="osmium-conformance-tls-"))
    leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(certfile))
    leaf.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


@contextmanager
def conformance_server(*args: str) -> Iterator[ServerProcess]:
    """`running_server(*args)`, over TLS when OSMIUM_CONFORMANCE_TLS names a back-end."""
    if TLS_BACKEND:
        certfile, keyfile = _certificates()
        args = (*args, "--certfile", certfile, "--keyfile", keyfile, "--tls-backend", TLS_BACKEND)
    with running_server(*args) as server:
        yield server


def client_context() -> ssl.SSLContext:
    """What a raw client wraps its socket with for an https server: ALPN h2, no verification."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context
