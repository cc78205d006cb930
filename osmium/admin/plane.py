"""The admin plane as the acceptor runs it: the listener bound before any fork, the token, the
admin process (started, restarted, stopped) and the link on which it asks the hub.

The acceptor's loop calls `fds`, `on_readable`, `tick` and `next_deadline`; nothing here blocks
it for long: answers to the admin process go out with a short send timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from osmium.admin.hub import Acceptor, AdminHub
from osmium.admin.process import run_admin
from osmium.config import Config
from osmium.listeners import admin_url, bind_admin_listener

log = logging.getLogger("osmium.admin")

#: Seconds the acceptor may spend sending one answer to the admin process.
ANSWER_TIMEOUT = 2.0
#: Seconds between restarts of an admin process that keeps dying.
RESTART_DELAY = 1.0
MAX_QUERY_LINE = 1024 * 1024
#: Seconds the admin process gets to exit at a stop before it is killed.
STOP_TIMEOUT = 5.0


class AdminPlane:
    def __init__(self, config: Config, acceptor: Acceptor) -> None:
        assert config.admin_bind is not None
        self._listener = bind_admin_listener(config.admin_bind)
        self.url = admin_url(self._listener)
        self._unix_path = config.admin_bind[5:] if config.admin_bind.startswith("unix:") else None
        # On a unix socket the file's mode (0600) is the access control; TCP needs the token.
        self.token = config.admin_token
        self._token_generated = self.token is None and self._unix_path is None
        if self._token_generated:
            self.token = secrets.token_urlsafe(24)
        self.hub = AdminHub(
            acceptor, config.admin_history, self._answer, config.limits.ping_timeout
        )
        self._pid = 0
        self._link: socket.socket | None = None
        self._buffer = bytearray()
        self._restart_at = 0.0
        self._prepare_child: Callable[[list[socket.socket] | None], None] = lambda _keep: None
        self._stopping = False

    # -- the admin process -----------------------------------------------------------------------

    def start(self, prepare_child: Callable[[socket.socket | None], None]) -> None:
        """Fork the admin process; `prepare_child` drops the acceptor's resources in it."""
        self._prepare_child = prepare_child
        self._spawn()

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                ours.close()
                if self._link is not None:
                    self._link.close()
                self._prepare_child(None)
                status = run_admin(self._listener, theirs, self.token)
            except BaseException:
                log.exception("admin process crashed")
            finally:
                logging.shutdown()
                os._exit(status)
        theirs.close()
        ours.settimeout(ANSWER_TIMEOUT)
        self._pid, self._link = pid, ours
        self._buffer.clear()
        self.hub.record("admin-started", f"admin process {pid} started", pid=pid)

    def announce(self) -> None:
        """The admin URL; a generated token with it (a token given to us stays out of logs)."""
        if self.token is None:
            log.info("admin: %s (no token: the socket file is owner-only)", self.url)
        elif self._token_generated:
            log.info("admin: %s/#token=%s", self.url, self.token)
        else:
            log.info("admin: %s/ (token: --admin-token)", self.url)

    def reaped(self, pid: int) -> bool:
        """`pid` exited: True if it was the admin process (restarted soon, unless stopping)."""
        if pid != self._pid:
            return False
        self._pid = 0
        if self._link is not None:
            self._link.close()
            self._link = None
        if not self._stopping:
            log.warning("admin process %d exited; restarting it", pid)
            self.hub.record("admin-exited", f"admin process {pid} exited; restarting", pid=pid)
            self._restart_at = time.monotonic() + RESTART_DELAY
        return True

    def stop(self) -> None:
        """The server stops: the admin process goes, the listener and its socket file too."""
        self._stopping = True
        if self._pid:
            self._end_admin_process()
        if self._link is not None:
            self._link.close()
        self._listener.close()
        if self._unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._unix_path)

    def _end_admin_process(self) -> None:
        """TERM, then KILL if it has not exited within STOP_TIMEOUT: a stop never hangs on it."""
        deadline = time.monotonic() + STOP_TIMEOUT
        signum = signal.SIGTERM
        while True:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signum)
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(self._pid, os.WNOHANG)[0]:
                        return
                except ChildProcessError:
                    return
                time.sleep(0.01)
            signum, deadline = signal.SIGKILL, float("inf")

    def close_in_child(self) -> None:
        """In a forked worker: none of the admin plane's descriptors."""
        self._listener.close()
        if self._link is not None:
            self._link.close()

    # -- the acceptor's loop ---------------------------------------------------------------------

    def fds(self) -> list[int]:
        return [self._link.fileno()] if self._link is not None else []

    def next_deadline(self) -> float:
        deadlines = [self.hub.next_deadline() or float("inf")]
        if not self._pid:
            deadlines.append(self._restart_at)
        return min(deadlines)

    def tick(self, now: float) -> None:
        self.hub.sample(now)
        self.hub.expire(now)
        if not self._pid and not self._stopping and now >= self._restart_at:
            self._spawn()

    def on_readable(self, fd: int) -> None:
        """Queries from the admin process."""
        if self._link is None:
            return
        try:
            chunk = self._link.recv(256 * 1024)
        except (BlockingIOError, TimeoutError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the admin process is going; reaping it restarts it
            self._link.close()
            self._link = None
            return
        self._buffer += chunk
        if len(self._buffer) > MAX_QUERY_LINE and b"\n" not in self._buffer:
            self._buffer.clear()
        now = time.monotonic()
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            try:
                query = json.loads(line)
            except ValueError:
                continue
            if isinstance(query, dict):
                self.hub.on_query(query, now)

    def _answer(self, query_id: int, status: int, body: dict[str, Any]) -> None:
        if self._link is None:
            return
        line = json.dumps({"id": query_id, "status": status, "body": body}).encode() + b"\n"
        try:
            self._link.sendall(line)
        except OSError as error:
            # A stuck admin process must not stall the acceptor: it is restarted.
            log.warning("admin process not reading its answers (%s); restarting it", error)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
