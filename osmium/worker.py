"""A worker process: forked by the acceptor, it imports the app and serves one slot's socket.

The app is imported here, after the fork, so a rolling reload (SIGHUP) picks up new code.
Failures a restart cannot fix are reported to the acceptor as `fatal` and end the server.
"""

from __future__ import annotations

import logging
import random
import signal
import socket

from osmium.app_loader import import_app
from osmium.channel import ReportWriter
from osmium.config import Config, ConfigError
from osmium.proxy import wrap_app
from osmium.server import Server, tls_listener

log = logging.getLogger("osmium")

#: Exit status of a worker whose configuration cannot work (the app does not import, ...).
EXIT_CONFIG = 2


def reset_signals() -> None:
    """Undo the acceptor's signal setup: TERM/INT drain, QUIT stops now, USR2 retires."""
    signal.set_wakeup_fd(-1)
    # USR2 (retire) and QUIT (stop now) are ignored only until the worker's event loop takes them
    # over; the acceptor sends QUIT only after a TERM, which ends a worker still starting.
    for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)


def run_worker(
    config: Config,
    listeners: list[tuple[socket.socket, bool]],
    report_fd: int,
    slot: int,
    command_fd: int | None,
) -> int:
    """The whole life of a worker; returns its exit status. `listeners`: its listening sockets,
    each with whether it serves TLS; `command_fd`: the admin plane's commands (None while it is
    off)."""
    reports = ReportWriter(report_fd)
    try:
        app = wrap_app(import_app(config.app, factory=config.factory), config)
        tls = tls_listener(config)
    except ConfigError as error:
        reports.send("fatal", exit_code=EXIT_CONFIG, message=str(error))
        return EXIT_CONFIG
    max_requests = config.max_requests
    if max_requests:
        # Jitter keeps workers started together from all recycling at the same moment.
        max_requests += random.randint(0, config.max_requests_jitter)
    try:
        return Server(config, app, listeners, tls, reports, max_requests, slot, command_fd).run()
    finally:
        reports.close()
