"""TLS with pyOpenSSL over memory BIOs: asyncio carries plain TCP, and a wrapping protocol
encrypts and decrypts, standing in as the transport of the connection's own protocol.

Same policy as the stdlib back-end: TLS 1.2+, the configured TLS 1.2 ciphers, no compression or
renegotiation, ALPN (first of ours the client offers) and certificates chosen by SNI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from osmium.tls import (
    Listener,
    ProtocolFactory,
    TLSConfigError,
    TLSSettings,
    first_certificate_pem,
)
from osmium.tls.stdlib import check_files

log = logging.getLogger("osmium.tls")

#: Bytes asked of OpenSSL per read: outgoing BIO data and decrypted records alike.
CHUNK = 64 * 1024
VERIFY_FLAGS = {
    "none": SSL.VERIFY_NONE,
    "optional": SSL.VERIFY_PEER,
    "required": SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
}
#: OpenSSL's X509_V_ERR_* codes a client certificate most often fails with (x509_vfy.h).
VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    23: "certificate revoked",
    26: "unsupported certificate purpose",
}


class PyOpenSSLTLS:
    name = "pyopenssl"

    def listener(self, settings: TLSSettings) -> Listener:
        default = _context(settings, settings.certfile, settings.keyfile)
        by_name = {
            host.lower().encode("idna"): _context(settings, certfile, keyfile)
            for host, (certfile, keyfile) in settings.sni.items()
        }
        if by_name:

            def choose(connection: SSL.Connection) -> None:
                name = connection.get_servername()
                chosen = by_name.get(name.lower()) if name else None
                if chosen is not None:
                    connection.set_context(chosen)

            default.set_tlsext_servername_callback(choose)

        def wrap(factory: ProtocolFactory) -> ProtocolFactory:
            return lambda: PyOpenSSLProtocol(default, factory, settings.handshake_timeout)

        return Listener(ssl_context=None, wrap=wrap)


def _context(settings: TLSSettings, certfile: str, keyfile: str) -> SSL.Context:
    check_files(certfile, keyfile, settings.password)
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(
        SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1
        | SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION
    )  # fmt: skip
    try:
        context.set_cipher_list(settings.ciphers.encode())
    except SSL.Error:
        raise TLSConfigError(f"no usable cipher in {settings.ciphers!r}") from None
    offered = [protocol.encode() for protocol in settings.alpn]

    def select(_: SSL.Connection, client: list[bytes]) -> bytes:
        for protocol in offered:
            if protocol in client:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]

    context.set_alpn_select_callback(select)
    try:
        context.use_certificate_chain_file(certfile)
    except SSL.Error as error:
        raise TLSConfigError(f"cannot load certificate {certfile}: {_reason(error)}") from None
    try:
        with open(keyfile, "rb") as pem:
            data = pem.read()
        # As ssl does, a password for a key that is not encrypted is no error.
        encrypted = settings.password is not None and b"ENCRYPTED" in data
        password = settings.password.encode() if encrypted else None  # type: ignore[union-attr]
        key = serialization.load_pem_private_key(data, password)
    except ValueError as error:
        # A wrong password usually fails the padding check ("Incorrect password?"), but about
        # one time in 256 it decrypts to bytes that only fail as ASN.1: the same cause.
        reason = "the password does not decrypt it" if encrypted else str(error)
        raise TLSConfigError(f"cannot load key {keyfile}: {reason}") from None
    except (OSError, TypeError, UnsupportedAlgorithm) as error:
        raise TLSConfigError(f"cannot load key {keyfile}: {error}") from None
    try:
        context.use_privatekey(key)  # type: ignore[arg-type]
    except SSL.Error as error:
        raise TLSConfigError(
            f"cannot load key {keyfile} for certificate {certfile}: {_reason(error)}"
        ) from None
    try:
        context.check_privatekey()
    except SSL.Error:
        raise TLSConfigError(f"key {keyfile} does not match certificate {certfile}") from None
    _verify_clients(context, settings)
    context.set_app_data(first_certificate_pem(certfile))  # the `tls` extension's server_cert
    return context


def _verify_clients(context: SSL.Context, settings: TLSSettings) -> None:
    """--ca-certs and --verify-client. "optional" serves a client whose certificate does not
    verify too, and tells the app why (`client_cert_error`)."""
    if settings.ca_certs is not None:
        try:
            context.load_verify_locations(settings.ca_certs)
        except SSL.Error as error:
            raise TLSConfigError(
                f"cannot load CA certificates {settings.ca_certs}: {_reason(error)}"
            ) from None
    if settings.verify_client == "optional":
        context.set_verify(VERIFY_FLAGS["optional"], _note_verify_error)
    else:
        context.set_verify(VERIFY_FLAGS[settings.verify_client])


def _note_verify_error(connection: SSL.Connection, _: Any, error: int, depth: int, ok: int) -> bool:
    """Let the handshake go on, keeping the first failure for the app."""
    if not ok and connection.get_app_data() is None:
        reason = VERIFY_ERRORS.get(error, f"X509 verify error {error}")
        connection.set_app_data(f"{reason} (depth {depth})")
    return True


def _reason(error: SSL.Error) -> str:
    """OpenSSL's error queue, as its last reason string (or the whole thing)."""
    details = error.args[0] if error.args else None
    if isinstance(details, list) and details and isinstance(details[-1], tuple):
        return str(details[-1][-1])
    return str(error)


class TLSInfo:
    """What `get_extra_info("ssl_object")` gives: the `ssl.SSLObject` methods the server uses,
    and the client certificate facts of osmium/tls/scope.py."""

    __slots__ = (
        "_alpn",
        "_chain",
        "_cipher",
        "_version",
        "client_cert_error",
        "client_cert_name",
        "server_cert_pem",
        "server_name_indicated",
    )

    def __init__(self, connection: SSL.Connection) -> None:
        self.server_cert_pem = connection.get_context().get_app_data()
        self.client_cert_error = connection.get_app_data()
        self._chain: list[bytes] = []
        self.client_cert_name: str | None = None
        leaf = connection.get_peer_certificate()
        if leaf is not None:
            certificates = [leaf, *(connection.get_peer_cert_chain() or ())]
            chain = [_der(certificate) for certificate in certificates]
            # On a server, OpenSSL's chain may or may not repeat the leaf.
            self._chain = chain[:1] + [der for der in chain[1:] if der != chain[0]]
            self.client_cert_name = leaf.to_cryptography().subject.rfc4514_string()
        server_name = connection.get_servername()
        self.server_name_indicated = server_name.decode() if server_name else None
        alpn = connection.get_alpn_proto_negotiated()
        self._alpn = alpn.decode() if alpn else None
        self._version = connection.get_protocol_version_name()
        name = connection.get_cipher_name()
        self._cipher = (
            (name, connection.get_cipher_version(), connection.get_cipher_bits()) if name else None
        )

    def selected_alpn_protocol(self) -> str | None:
        return self._alpn

    def version(self) -> str | None:
        return self._version

    def cipher(self) -> tuple[str, str, int] | None:
        return self._cipher  # type: ignore[return-value]

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        """The client's certificate as DER (only the binary form: the name is client_cert_name)."""
        return self._chain[0] if self._chain and binary_form else None

    def get_unverified_chain(self) -> list[bytes]:
        return self._chain


def _der(certificate: Any) -> bytes:
    return certificate.to_cryptography().public_bytes(serialization.Encoding.DER)  # type: ignore[no-any-return]


class PyOpenSSLProtocol(asyncio.Protocol, asyncio.Transport):
    """The TCP transport's protocol, and the transport of the HTTP protocol above it."""

    def __init__(
        self, context: SSL.Context, factory: ProtocolFactory, handshake_timeout: float
    ) -> None:
        self._factory = factory
        self._handshake_timeout = handshake_timeout
        self._tls = SSL.Connection(context, None)
        self._tls.set_accept_state()
        self._tcp: asyncio.Transport | None = None
        self._app: asyncio.Protocol | None = None  # set once the handshake is done
        self._info: TLSInfo | None = None
        self._closed = False
        self._paused = False
        self._drain_pending = False
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol, on the TCP transport ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tcp = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._handshake_timeout, self._handshake_timed_out)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._tls.bio_write(data)
        if self._app is None and not self._handshake():
            return
        self._receive()

    def eof_received(self) -> bool | None:
        self.close()  # a peer that stops sending is done: no half-open TLS connections
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._app is not None:
            app, self._app = self._app, None
            app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()

    # -- TLS -------------------------------------------------------------------------------------

    def _handshake(self) -> bool:
        """True once the handshake is done and the HTTP protocol has the connection."""
        try:
            self._tls.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return False
        except SSL.Error as error:
            log.debug("TLS handshake with %s failed: %s", self._peer(), error)
            self._flush()  # the alert, if OpenSSL wrote one
            self._close_tcp()
            return False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush()
        self._info = TLSInfo(self._tls)
        self._app = self._factory()
        self._app.connection_made(self)
        return not self._closed

    def _receive(self) -> None:
        """Decrypted data to the HTTP protocol, until OpenSSL needs more bytes or we pause."""
        recv = self._tls.recv
        while not self._paused and not self._closed:
            try:
                data = recv(CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # close_notify
                self.close()
                return
            except SSL.Error as error:
                log.debug("TLS error from %s: %s", self._peer(), error)
                self._flush()
                self._close_tcp()
                return
            assert self._app is not None
            self._app.data_received(data)
        if not self._closed:
            self._flush()  # post-handshake messages (tickets, key updates)

    def _flush(self) -> None:
        """Everything OpenSSL has written, to the TCP transport."""
        assert self._tcp is not None
        read, write = self._tls.bio_read, self._tcp.write
        while True:
            try:
                data = read(CHUNK)
            except SSL.WantReadError:
                return
            write(data)
            if len(data) < CHUNK:  # a memory BIO gives all it has: it is empty now
                return

    def _close_tcp(self) -> None:
        self._closed = True
        if self._tcp is not None:
            self._tcp.close()

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._app is None and not self._closed:
            log.debug("TLS handshake with %s timed out", self._peer())
            self._close_tcp()

    def _peer(self) -> object:
        return self._tcp.get_extra_info("peername") if self._tcp is not None else None

    def _drain(self) -> None:
        self._drain_pending = False
        if self._app is not None and not self._closed and not self._paused:
            self._receive()

    # -- asyncio.Transport, for the HTTP protocol ------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or not data:
            return
        try:
            self._tls.sendall(data)
        except SSL.Error as error:
            log.debug("TLS error writing to %s: %s", self._peer(), error)
            self._close_tcp()
            return
        self._flush()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS connections cannot half-close")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._app is not None:
            with contextlib.suppress(SSL.Error):
                self._tls.shutdown()  # close_notify
            self._flush()
        assert self._tcp is not None
        self._tcp.close()  # after what it still buffers

    def abort(self) -> None:
        self._closed = True
        if self._tcp is not None:
            self._tcp.abort()

    def is_closing(self) -> bool:
        return self._closed or self._tcp is None or self._tcp.is_closing()

    def pause_reading(self) -> None:
        self._paused = True
        if self._tcp is not None:
            self._tcp.pause_reading()

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._tcp is not None:
            self._tcp.resume_reading()
        # Records already decrypted or buffered in OpenSSL get no new data_received to flush them.
        if not self._drain_pending:
            self._drain_pending = True
            asyncio.get_running_loop().call_soon(self._drain)

    def is_reading(self) -> bool:
        return not self._paused and not self._closed

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        assert self._tcp is not None
        self._tcp.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        assert self._tcp is not None
        return self._tcp.get_write_buffer_limits()

    def get_write_buffer_size(self) -> int:
        return self._tcp.get_write_buffer_size() if self._tcp is not None else 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._info if self._info is not None else default
        if name == "pyopenssl_connection":
            return self._tls
        if self._tcp is None:
            return default
        return self._tcp.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._app  # type: ignore[return-value]
