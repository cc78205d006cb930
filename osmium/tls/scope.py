"""The ASGI `tls` extension (asgiref's specs/tls.rst, 0.2) of one TLS connection, built once per
connection from whatever its back-end exposes as `ssl_object`.

Both built-in back-ends give: `version()`, `cipher()` and `getpeercert(binary_form=True)` (as
`ssl.SSLObject` has them), and where they can: `get_unverified_chain()` (the client's chain as DER,
leaf first: pyOpenSSL, and the stdlib from Python 3.13), `server_cert_pem`, `client_cert_name`
(RFC 4514) and `client_cert_error` (pyOpenSSL with `--verify-client optional`). A third-party
back-end gives what it can; what it cannot is reported as the spec says (None, an empty chain).
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

#: The TLS versions osmium serves, as the spec wants them (the wire's version numbers).
TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}

#: OpenSSL's long attribute names (ssl's getpeercert()) as RFC 4514 writes them: its own short
#: names, else the OID in dotted form, as `cryptography`'s rfc4514_string() does.
RFC4514_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
    "emailAddress": "1.2.840.113549.1.9.1",
    "serialNumber": "2.5.4.5",
    "surname": "2.5.4.4",
    "givenName": "2.5.4.42",
    "title": "2.5.4.12",
    "initials": "2.5.4.43",
    "generationQualifier": "2.5.4.44",
    "dnQualifier": "2.5.4.46",
    "pseudonym": "2.5.4.65",
    "businessCategory": "2.5.4.15",
    "postalCode": "2.5.4.17",
}


@functools.cache
def cipher_suite_ids() -> dict[str, int]:
    """OpenSSL cipher names -> the 16-bit IANA numbers the spec wants (the low half of
    OpenSSL's own id), for every suite this OpenSSL knows."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("ALL:@SECLEVEL=0")
    return {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}


def tls_extension(tls: Any) -> dict[str, Any]:
    """scope["extensions"]["tls"] for a connection whose `ssl_object` is `tls`."""
    chain = peer_chain(tls)
    cipher = tls.cipher()
    return {
        "server_cert": getattr(tls, "server_cert_pem", None),
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der) for der in chain],
        "client_cert_name": client_cert_name(tls) if chain else None,
        "client_cert_error": getattr(tls, "client_cert_error", None),
        "tls_version": TLS_VERSIONS.get(tls.version() or ""),
        "cipher_suite": cipher_suite_ids().get(cipher[0]) if cipher else None,
    }


def peer_chain(tls: Any) -> list[bytes]:
    """The client's certificates as DER, its own first; empty when it sent none."""
    unverified = getattr(tls, "get_unverified_chain", None)
    chain = [bytes(der) for der in unverified() or ()] if unverified is not None else []
    if chain:
        return chain
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def client_cert_name(tls: Any) -> str | None:
    """The client certificate's subject, RFC 4514: the back-end's own rendering, or built from
    ssl's parsed certificate (which it fills only for a verified one: None otherwise)."""
    if hasattr(tls, "client_cert_name"):
        return tls.client_cert_name  # type: ignore[no-any-return]
    subject = (tls.getpeercert() or {}).get("subject")
    return rfc4514(subject) if subject else None


def rfc4514(subject: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    """ssl's subject (RDNs in certificate order) as an RFC 4514 string: the last RDN first."""
    return ",".join(
        "+".join(f"{RFC4514_NAMES.get(kind, kind)}={escape(value)}" for kind, value in rdn)
        for rdn in reversed(subject)
    )


def escape(value: str) -> str:
    """RFC 4514 §2.4: the special characters, a leading space or '#', a trailing space, NUL."""
    for special in ("\\", '"', "+", ",", ";", "<", ">"):
        value = value.replace(special, "\\" + special)
    value = value.replace("\0", "\\00")
    if value[:1] in (" ", "#"):
        value = "\\" + value
    if value.endswith(" ") and not value.endswith("\\ "):
        value = value[:-1] + "\\ "
    return value
