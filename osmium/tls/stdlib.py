"""TLS with the standard library's ssl module: TLS 1.2+, RFC 9113 §9.2 ciphers, ALPN h2."""

from __future__ import annotations

import os
import ssl

from osmium.tls import TLSConfigError

# RFC 9113 §9.2.2: TLS 1.2 with HTTP/2 needs ephemeral key exchange and an AEAD cipher.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
ALPN_PROTOCOLS = ["h2", "http/1.1"]


class StdlibTLS:
    name = "stdlib"

    def server_context(self, certfile: str, keyfile: str) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        context.set_alpn_protocols(ALPN_PROTOCOLS)
        for path in (certfile, keyfile):
            if not os.path.isfile(path):
                raise TLSConfigError(f"cannot read {path}: no such file")
        try:
            context.load_cert_chain(certfile, keyfile)
        except (ssl.SSLError, OSError) as error:
            raise TLSConfigError(
                f"cannot load certificate {certfile} with key {keyfile}: {error}"
            ) from None
        return context
