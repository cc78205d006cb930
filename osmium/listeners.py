"""Listening sockets for the worker slots: one SO_REUSEPORT socket per slot, all on one address.

The kernel spreads new connections across the sockets of the group, so each worker accepts from
its own queue. A unix socket path, or a socket handed over by descriptor, cannot be bound once
per slot: every worker accepts from that one socket (the kernel wakes one of them per
connection). Binding happens once, in the acceptor, before any fork: its errors are one line.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from osmium.config import ConfigError, parse_bind


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bind_error(host: str, port: int, error: OSError | OverflowError) -> ConfigError:
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        reason = "address already in use"
    else:
        reason = getattr(error, "strerror", None) or str(error)
    return ConfigError(f"cannot listen on {host}:{port}: {reason}")


def claim_port(host: str, port: int) -> int:
    """Check that nobody listens on the address and pick the port when `port` is 0.

    The probe binds without SO_REUSEPORT, so it also fails when another SO_REUSEPORT group (say,
    a second osmium) holds the port: joining that group silently would split its traffic.
    """
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            return int(probe.getsockname()[1])
    except (OSError, OverflowError) as error:
        raise _bind_error(host, port, error) from None


def bind_listener(host: str, port: int, backlog: int) -> socket.socket:
    """One member of the SO_REUSEPORT group on host:port, with TCP_NODELAY for what it accepts."""
    try:
        sock = socket.create_server(
            (host, port), family=_family(host), backlog=backlog, reuse_port=True
        )
    except (OSError, OverflowError) as error:
        raise _bind_error(host, port, error) from None
    # Without TCP_NODELAY a response that leaves in two segments waits for the client's delayed
    # ACK: ~40 ms per keep-alive request. Linux passes the option on to accepted sockets from
    # their first byte (TLS handshakes included). asyncio also sets it, but only on sockets whose
    # proto is IPPROTO_TCP, and create_server leaves proto 0: re-adopting the descriptor reads
    # the real proto back, so accepted sockets inherit it and asyncio sets the option everywhere.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return socket.socket(fileno=sock.detach())


def listening_url(sock: socket.socket, tls: bool) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def bind_admin_listener(bind: str) -> socket.socket:
    """The admin plane's one listening socket: "HOST:PORT", or "unix:PATH" made owner-only (0600;
    a stale socket file nobody listens on is replaced, any other file is left alone)."""
    if not bind.startswith("unix:"):
        host, port = parse_bind(bind)
        try:
            return socket.create_server((host, port), family=_family(host), backlog=64)
        except (OSError, OverflowError) as error:
            raise _bind_error(host, port, error) from None
    return bind_unix_listener(bind[5:], 64, 0o600)


def bind_unix_listener(path: str, backlog: int, mode: int) -> socket.socket:
    """A unix socket at `path` with file mode `mode`: created owner-only, so nobody else may
    connect before the mode is set; a stale socket file nobody listens on is replaced, any
    other file is left alone."""
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous_umask = os.umask(0o177)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on unix:{path}: {error.strerror or error}") from None
    finally:
        os.umask(previous_umask)
    return sock


def adopt_listener(fd: int) -> socket.socket:
    """The listening stream socket open as descriptor `fd` (systemd's LISTEN_FDS start at 3)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as error:
        raise ConfigError(f"--fd {fd}: {error.strerror or error}") from None
    listening = sock.type == socket.SOCK_STREAM and sock.family in (
        socket.AF_INET, socket.AF_INET6, socket.AF_UNIX,
    ) and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)  # fmt: skip
    if not listening:
        sock.detach()  # not ours to close
        raise ConfigError(f"--fd {fd}: not a listening TCP or unix stream socket")
    if sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise ConfigError(f"cannot listen on unix:{path}: {error.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"cannot listen on unix:{path}: a file that is not a socket is there")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
            return
        except OSError:
            return
    raise ConfigError(f"cannot listen on unix:{path}: another server is listening there")


def admin_url(sock: socket.socket) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    return listening_url(sock, tls=False)
