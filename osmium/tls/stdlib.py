"""TLS with the standard library's ssl module, terminated by asyncio: TLS 1.2+, ALPN, SNI."""

from __future__ import annotations

import os
import ssl

from osmium.tls import Listener, TLSConfigError, TLSSettings, first_certificate_pem

#: --verify-client as ssl's verify modes. "optional" asks for a certificate and serves a client
#: that sends none; one that sends a certificate that does not verify fails the handshake (ssl
#: has no verify callback to let it through with `client_cert_error`, as pyOpenSSL does).
VERIFY_MODES = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def check_files(certfile: str, keyfile: str, password: str | None) -> None:
    """Missing files and an encrypted key without a password, named before OpenSSL is asked
    (its own answer to the latter would be an interactive password prompt)."""
    for path in (certfile, keyfile):
        if not os.path.isfile(path):
            raise TLSConfigError(f"cannot read {path}: no such file")
    if password is None:
        with open(keyfile, "rb") as key:
            if b"ENCRYPTED" in key.read():
                raise TLSConfigError(f"key {keyfile} is encrypted: give --keyfile-password")


class StdlibTLS:
    name = "stdlib"

    def listener(self, settings: TLSSettings) -> Listener:
        default = self._context(settings, settings.certfile, settings.keyfile)
        by_name = {
            host.lower(): self._context(settings, certfile, keyfile)
            for host, (certfile, keyfile) in settings.sni.items()
        }
        certificates = {
            id(context): first_certificate_pem(certfile)
            for context, certfile in [
                (default, settings.certfile),
                *((by_name[host.lower()], files[0]) for host, files in settings.sni.items()),
            ]
        }

        def choose(sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            # Kept for the admin plane and the `tls` extension: a server-side SSLObject knows
            # neither the name the client asked for nor which certificate it was sent.
            sock.server_name_indicated = server_name  # type: ignore[attr-defined]
            chosen = by_name.get((server_name or "").lower())
            if chosen is not None:
                sock.context = chosen
            sock.server_cert_pem = certificates[id(sock.context)]  # type: ignore[attr-defined]

        default.sni_callback = choose
        return Listener(ssl_context=default)

    @staticmethod
    def _context(settings: TLSSettings, certfile: str, keyfile: str) -> ssl.SSLContext:
        check_files(certfile, keyfile, settings.password)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError:
            raise TLSConfigError(f"no usable cipher in {settings.ciphers!r}") from None
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        context.set_alpn_protocols(list(settings.alpn))
        try:
            context.load_cert_chain(certfile, keyfile, password=settings.password)
        except (ssl.SSLError, OSError) as error:
            raise TLSConfigError(
                f"cannot load certificate {certfile} with key {keyfile}: {error}"
            ) from None
        if settings.ca_certs is not None:
            try:
                context.load_verify_locations(cafile=settings.ca_certs)
            except (ssl.SSLError, OSError) as error:
                raise TLSConfigError(
                    f"cannot load CA certificates {settings.ca_certs}: {error}"
                ) from None
        context.verify_mode = VERIFY_MODES[settings.verify_client]
        return context
