"""The acceptor: owns one SO_REUSEPORT socket per worker slot, forks and supervises the workers.

Read it top to bottom like gunicorn's arbiter: signals are queued and wake the loop through a
self-pipe; each loop turn reads worker reports, handles signals, then reap -> murder -> manage.

- TERM/INT: graceful stop (workers GOAWAY and drain up to graceful_timeout); a second one: now.
  A terminal's Ctrl-C (or a TERM to the process group) reaches the workers too, so a worker takes
  TERM/INT only as "drain", however often; "now" is QUIT, which only the acceptor decides on.
- QUIT: stop now.
- HUP: rolling reload, one slot at a time: the new worker is ready before the old one retires.
- TTIN/TTOU: one worker slot more/less.
The acceptor keeps its copy of every slot socket, so when a worker dies the connections queued on
its socket wait for the replacement instead of being refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from osmium.channel import ReportReader
from osmium.config import Config
from osmium.listeners import bind_listener, claim_port, listening_url
from osmium.server import loop_factory, tls_listener
from osmium.worker import reset_signals, run_worker

log = logging.getLogger("osmium")

HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)
#: Restart delay after the first crash during start-up; doubles with each crash in a row.
RESTART_DELAY = 0.25
MAX_RESTART_DELAY = 16.0
#: Extra seconds past graceful_timeout before workers that still run are killed.
KILL_MARGIN = 5.0
LOOP_TICK = 1.0
SUMMED_COUNTERS = (
    "requests", "connections_total", "bytes_received", "bytes_sent",
    "protocol_errors", "timeouts", "connections_dropped",
)  # fmt: skip
#: Counters of the defences at work, named in the final log line when not zero.
DEFENCE_COUNTERS = {
    "protocol_errors": "closed for protocol errors",
    "timeouts": "timed out (handshake or headers)",
    "connections_dropped": "dropped for unread output",
}


@dataclass
class WorkerHandle:
    pid: int
    slot: int
    generation: int
    reader: ReportReader
    last_seen: float
    ready: bool = False
    retiring: bool = False
    stats: dict[str, Any] = field(default_factory=dict)


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        # Everything a worker would fail on for good is checked once here, before any fork.
        tls_listener(config)
        loop_factory(config.loop)
        self.port = claim_port(config.host, config.port)
        self.sockets = [
            bind_listener(config.host, self.port, config.backlog) for _ in range(config.workers)
        ]
        self.url = listening_url(self.sockets[0], config.tls)
        self.workers: dict[int, WorkerHandle] = {}
        self.generation = 0
        self.reload_slots: list[int] = []
        self.crashes_in_a_row: dict[int, int] = {}
        self.restart_at: dict[int, float] = {}
        self.signal_queue: list[int] = []
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_code = 0
        self.announced = False
        #: Cumulative counters of the workers that have exited, from their last reports.
        self.served: dict[str, int] = dict.fromkeys(SUMMED_COUNTERS, 0)
        self._wakeup_read, self._wakeup_write = os.pipe()

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        try:
            self._manage()
            while not (self.stopping and not self.workers):
                self._wait_and_read_reports()
                self._handle_signals()
                self._reap()
                if self.stopping:
                    self._kill_stragglers()
                    continue
                self._murder_unresponsive()
                self._manage()
        finally:
            self._close_sockets()
        if self.exit_code == 0:
            defences = "".join(
                f"; {self.served[name]} {what}"
                for name, what in DEFENCE_COUNTERS.items()
                if self.served[name]
            )
            log.info(
                "stopped after %d requests on %d connections%s",
                self.served["requests"],
                self.served["connections_total"],
                defences,
            )
        return self.exit_code

    def _install_signals(self) -> None:
        os.set_blocking(self._wakeup_write, False)
        signal.set_wakeup_fd(self._wakeup_write)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._queue_signal)

    def _queue_signal(self, signum: int, frame: object) -> None:
        if signum != signal.SIGCHLD:
            self.signal_queue.append(signum)

    def _wait_and_read_reports(self) -> None:
        readers = {worker.reader.fd: worker for worker in self.workers.values()}
        try:
            ready, _, _ = select.select([self._wakeup_read, *readers], [], [], self._timeout())
        except InterruptedError:
            return
        for fd in ready:
            if fd == self._wakeup_read:
                os.read(self._wakeup_read, 4096)
            else:
                self._read_reports(readers[fd])

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [at - now for at in self.restart_at.values()]
        return max(0.0, min([LOOP_TICK, *due]))

    def _read_reports(self, worker: WorkerHandle) -> None:
        for message in worker.reader.read():
            self._on_report(worker, message)

    def _on_report(self, worker: WorkerHandle, message: dict[str, Any]) -> None:
        worker.last_seen = time.monotonic()
        kind = message["type"]
        if kind == "stats":
            worker.stats = message
        elif kind == "ready":
            worker.ready = True
            self.crashes_in_a_row.pop(worker.slot, None)
            log.debug("worker %d (slot %d) ready", worker.pid, worker.slot)
        elif kind == "retiring":
            worker.retiring = True
            log.info("worker %d retiring (%s)", worker.pid, message.get("reason", "?"))
        elif kind == "fatal":
            self._on_fatal(worker, message)

    def _on_fatal(self, worker: WorkerHandle, message: dict[str, Any]) -> None:
        """Before the server ever served: stop it with the message. After: keep what serves."""
        text = message.get("message", "worker failed")
        if self.announced:
            if self.reload_slots:
                log.error("reload abandoned, the current workers keep serving: %s", text)
                self.reload_slots = []
            else:
                log.error("worker %d cannot start: %s", worker.pid, text)
            return
        if self.exit_code == 0:
            self.exit_code = int(message.get("exit_code", 1))
            print(f"osmium: error: {text}", file=sys.stderr)
            self._stop(graceful=False)

    # -- signals ---------------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        while self.signal_queue:
            signum = self.signal_queue.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
                self._announce_stop(signum)
                self._stop(graceful=True)
            elif signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                log.info("stopping now: closing connections with streams in flight")
                self._stop(graceful=False)
            elif self.stopping:
                continue
            elif signum == signal.SIGHUP:
                self._reload()
            elif signum == signal.SIGTTIN:
                self._add_slot()
            elif signum == signal.SIGTTOU:
                self._remove_slot()

    def _announce_stop(self, signum: int) -> None:
        """Say what the stop waits for (as the workers last reported) and how to cut it short."""
        streams = sum(worker.stats.get("streams", 0) for worker in self.workers.values())
        again = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        log.info(
            "stopping: no new connections; waiting for %d stream(s) in flight (up to %g s); "
            "%s again to quit now",
            streams,
            self.config.graceful_timeout,
            again,
        )

    def _stop(self, graceful: bool) -> None:
        """Stop accepting, then ask every worker to drain (TERM) or to close at once (QUIT)."""
        if not self.stopping:
            self.stopping = True
            self.stop_deadline = time.monotonic() + self.config.graceful_timeout + KILL_MARGIN
            self._close_sockets()
            self._signal_workers(signal.SIGTERM)
        if not graceful:
            # Not a second TERM/INT: the workers may have had those from the process group.
            self._signal_workers(signal.SIGQUIT)

    def _reload(self) -> None:
        log.info("reloading: replacing %d worker(s) one by one", len(self.sockets))
        self.generation += 1
        self.reload_slots = list(range(len(self.sockets)))

    def _add_slot(self) -> None:
        self.sockets.append(bind_listener(self.config.host, self.port, self.config.backlog))
        log.info("adding a worker: %d slot(s)", len(self.sockets))

    def _remove_slot(self) -> None:
        if len(self.sockets) <= 1:
            log.info("not removing the last worker")
            return
        slot = len(self.sockets) - 1
        self.sockets.pop().close()
        self.reload_slots = [s for s in self.reload_slots if s != slot]
        for worker in self._workers_in(slot):
            self._retire(worker)
        log.info("removing a worker: %d slot(s)", len(self.sockets))

    # -- reap, murder, manage --------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._on_worker_exit(worker, os.waitstatus_to_exitcode(status))

    def _on_worker_exit(self, worker: WorkerHandle, code: int) -> None:
        self._read_reports(worker)  # a last report (fatal, final stats) may still be in the pipe
        worker.reader.close()
        for name in SUMMED_COUNTERS:
            self.served[name] += worker.stats.get(name, 0)
        if self.stopping or worker.retiring:
            return
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        if worker.ready:
            log.warning("worker %d (slot %d) died (%s); restarting", worker.pid, worker.slot, how)
            return
        if self._workers_in(worker.slot):
            # A reload's new worker failed; the slot's current worker goes on serving.
            log.error("worker %d (slot %d) failed to start (%s)", worker.pid, worker.slot, how)
            return
        crashes = self.crashes_in_a_row.get(worker.slot, 0) + 1
        self.crashes_in_a_row[worker.slot] = crashes
        delay = min(RESTART_DELAY * 2 ** (crashes - 1), MAX_RESTART_DELAY)
        self.restart_at[worker.slot] = time.monotonic() + delay
        log.error(
            "worker %d (slot %d) failed during start-up (%s), %d time(s) in a row; "
            "restarting in %.2f s",
            worker.pid,
            worker.slot,
            how,
            crashes,
            delay,
        )

    def _murder_unresponsive(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            silent_for = now - worker.last_seen
            if silent_for > self.config.worker_timeout:
                log.error("worker %d silent for %.1f s; killing it", worker.pid, silent_for)
                self._kill(worker.pid, signal.SIGKILL)
                worker.last_seen = now  # one kill per timeout; reaping takes it from here

    def _manage(self) -> None:
        now = time.monotonic()
        for slot in range(len(self.sockets)):
            if not self._workers_in(slot) and self.restart_at.get(slot, 0.0) <= now:
                self.restart_at.pop(slot, None)
                self._spawn(slot)
        self._continue_reload()
        if not self.announced and all(
            any(w.ready for w in self._workers_in(slot)) for slot in range(len(self.sockets))
        ):
            self.announced = True
            log.info("listening on %s (%d worker(s))", self.url, len(self.sockets))

    def _continue_reload(self) -> None:
        """Replace the first slot still on the old code: spawn, wait until ready, retire the old."""
        while self.reload_slots:
            slot = self.reload_slots[0]
            current = [w for w in self._workers_in(slot) if w.generation == self.generation]
            if not current:
                if self.restart_at.get(slot, 0.0) <= time.monotonic():
                    self.restart_at.pop(slot, None)
                    self._spawn(slot)
                return
            if not any(w.ready for w in current):
                return
            for worker in self._workers_in(slot):
                if worker.generation < self.generation:
                    self._retire(worker)
            self.reload_slots.pop(0)

    def _workers_in(self, slot: int) -> list[WorkerHandle]:
        return [w for w in self.workers.values() if w.slot == slot and not w.retiring]

    def _retire(self, worker: WorkerHandle) -> None:
        """USR2: the worker stops accepting and leaves once its connections went idle."""
        worker.retiring = True
        self._kill(worker.pid, signal.SIGUSR2)

    # -- processes -------------------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        report_read, report_write = os.pipe()
        # Until the child has its own handlers, a signal for it (a stop) would run a copy of the
        # acceptor's handler and be lost; blocked, it waits for them (see _become_worker).
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        pid = os.fork()
        if pid == 0:
            os.close(report_read)
            self._become_worker(slot, report_write)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        os.close(report_write)
        now = time.monotonic()
        self.workers[pid] = WorkerHandle(pid, slot, self.generation, ReportReader(report_read), now)
        log.debug("worker %d started for slot %d", pid, slot)

    def _become_worker(self, slot: int, report_write: int) -> None:
        """In the forked child: drop the acceptor's resources, serve, and never return."""
        status = 1
        try:
            reset_signals()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)
            for worker in self.workers.values():
                os.close(worker.reader.fd)
            for index, sock in enumerate(self.sockets):
                if index != slot:
                    sock.close()
            status = run_worker(self.config, self.sockets[slot], report_write)
        except BaseException:
            log.exception("worker crashed")
        finally:
            logging.shutdown()
            os._exit(status)

    def _signal_workers(self, signum: int) -> None:
        for pid in list(self.workers):
            self._kill(pid, signum)

    def _kill(self, pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    def _kill_stragglers(self) -> None:
        if time.monotonic() >= self.stop_deadline:
            for pid in list(self.workers):
                log.warning("worker %d still running after the graceful timeout; killing", pid)
                self._kill(pid, signal.SIGKILL)
            self.stop_deadline = float("inf")

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()
