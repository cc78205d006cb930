"""The acceptor: owns one SO_REUSEPORT socket per worker slot, forks and supervises the workers.

Read it top to bottom like gunicorn's arbiter: signals are queued and wake the loop through a
self-pipe; each loop turn reads worker reports, handles signals, then reap -> murder -> manage.

- TERM/INT: graceful stop (workers GOAWAY and drain up to graceful_timeout); a second one: now.
  A terminal's Ctrl-C (or a TERM to the process group) reaches the workers too, so a worker takes
  TERM/INT only as "drain", however often; "now" is QUIT, which only the acceptor decides on.
- QUIT: stop now.
- HUP: rolling reload, one slot at a time: the new worker is ready before the old one retires.
  With --reload, a changed Python file under the watched directories does the same.
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
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from osmium.admin.plane import AdminPlane
from osmium.channel import CommandWriter, ReportReader
from osmium.config import Config, ConfigError
from osmium.listeners import (
    adopt_listener,
    bind_listener,
    bind_unix_listener,
    claim_port,
    listening_url,
)
from osmium.reloader import Reloader, describe
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
#: Why a worker was replaced (README: Admin plane).
RESPAWN_CAUSES = ("crash", "timeout", "max-requests", "reload", "drain")
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
    #: The admin plane's command pipe to this worker (None while the admin plane is off).
    commands: CommandWriter | None = None
    started_at: float = field(default_factory=time.time)
    ready: bool = False
    retiring: bool = False
    #: Why it left, once known: max-requests, reload, drain, removed, timeout.
    leaving_for: str | None = None
    #: It said why it cannot start (a fatal report): its exit needs no log line of its own.
    failed: bool = False
    stats: dict[str, Any] = field(default_factory=dict)


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        # Everything a worker would fail on for good is checked once here, before any fork.
        tls_listener(config)
        loop_factory(config.loop)
        #: --reload: the watcher of the app's source files, started once all else is in place.
        self.reloader = Reloader(config.reload_dirs) if config.reload else None
        self.listen = config.listen_addresses
        #: The socket of each unix path or handed-over descriptor (by listener index): one,
        #: which every slot serves; and each TCP listener's port, claimed once (port 0: picked).
        self._shared: dict[int, socket.socket] = {}
        self._ports: dict[int, int] = {}
        #: Each slot's listening sockets, in listener order.
        self.slot_sockets: list[list[socket.socket]] = []
        try:
            for _ in range(config.workers):
                self.slot_sockets.append(self._bind_slot())
        except BaseException:
            self._close_sockets()
            raise
        self.url = ", ".join(
            listening_url(sock, address.tls)
            for sock, address in zip(self.slot_sockets[0], self.listen, strict=True)
        )
        self.started_at = time.time()
        #: Replacement workers started, by why the one before left (README: Admin plane).
        self.respawns: dict[str, int] = dict.fromkeys(RESPAWN_CAUSES, 0)
        self.reloads = self.slots_added = self.slots_removed = 0
        self.admin: AdminPlane | None = None
        if config.admin_bind is not None:
            self.admin = AdminPlane(config, self)
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
        if self.reloader is not None:
            self._start_reloader(self.reloader)

    def _start_reloader(self, reloader: Reloader) -> None:
        """Last in __init__, so that when the watches cannot be placed nothing stays bound."""
        try:
            reloader.start()
        except ConfigError:
            self._close_sockets()
            if self.admin is not None:
                self.admin.stop()
            raise

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        try:
            if self.admin is not None:
                self.admin.start(self._prepare_child)
            self._manage()
            while not (self.stopping and not self.workers):
                self._wait_and_read_reports()
                self._handle_signals()
                self._reap()
                if self.admin is not None:
                    self.admin.tick(time.monotonic())
                if self.stopping:
                    self._kill_stragglers()
                    continue
                self._murder_unresponsive()
                self._manage()
        finally:
            self._close_sockets()
            if self.admin is not None:
                self.admin.stop()
            if self.reloader is not None:
                self.reloader.stop()
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
        admin_fds = self.admin.fds() if self.admin is not None else []
        reloader_fds = [self.reloader.fd] if self.reloader is not None else []
        try:
            ready, _, _ = select.select(
                [self._wakeup_read, *readers, *admin_fds, *reloader_fds], [], [], self._timeout()
            )
        except InterruptedError:
            return
        for fd in ready:
            if fd == self._wakeup_read:
                os.read(self._wakeup_read, 4096)
            elif fd in readers:
                self._read_reports(readers[fd])
            elif fd in reloader_fds:
                self._on_source_change()
            elif self.admin is not None:
                self.admin.on_readable(fd)

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [at - now for at in self.restart_at.values()]
        if self.admin is not None:
            due.append(self.admin.next_deadline() - now)
        return max(0.0, min([LOOP_TICK, *due]))

    def _on_source_change(self) -> None:
        """--reload: the files changed since the last batch, in one reload (none while stopping)."""
        assert self.reloader is not None
        changed = self.reloader.changed()
        if changed and not self.stopping:
            self.reload(f"{describe(changed)} changed")

    def _read_reports(self, worker: WorkerHandle) -> None:
        for message in worker.reader.read():
            self._on_report(worker, message)

    def _on_report(self, worker: WorkerHandle, message: dict[str, Any]) -> None:
        worker.last_seen = time.monotonic()
        kind = message["type"]
        if kind == "stats":
            worker.stats = message
        elif kind == "reply":
            if self.admin is not None:
                self.admin.hub.on_reply(worker.pid, message, time.monotonic())
        elif kind == "ready":
            worker.ready = True
            self.crashes_in_a_row.pop(worker.slot, None)
            log.debug("worker %d (slot %d) ready", worker.pid, worker.slot)
            self._event("worker-ready", f"worker {worker.pid} ready (slot {worker.slot})", worker)
        elif kind == "retiring":
            reason = str(message.get("reason", "?"))
            worker.retiring = True
            worker.leaving_for = reason
            if reason in self.respawns:
                self.respawns[reason] += 1
            log.info("worker %d retiring (%s)", worker.pid, reason)
            self._event("worker-retiring", f"worker {worker.pid} retiring ({reason})", worker)
        elif kind == "event":
            self._on_worker_event(worker, message)
        elif kind == "fatal":
            self._on_fatal(worker, message)

    def _on_worker_event(self, worker: WorkerHandle, message: dict[str, Any]) -> None:
        """A defence fired or a policy closed a connection, as the worker tells it."""
        kind = str(message.get("kind"))
        if self.admin is None or kind not in ("defence", "connection-closed"):
            return
        what = str(message.get("what"))
        fields = {"defence": what} if kind == "defence" else {"by": what}
        self.admin.hub.record(
            kind, str(message.get("message")), pid=worker.pid, peer=message.get("peer"), **fields
        )

    def _event(
        self, kind: str, message: str, worker: WorkerHandle | None = None, **fields: Any
    ) -> None:
        """An entry in the admin plane's event log (when it is on)."""
        if self.admin is None:
            return
        if worker is not None:
            fields = {"pid": worker.pid, "slot": worker.slot, **fields}
        self.admin.hub.record(kind, message, **fields)

    def _on_fatal(self, worker: WorkerHandle, message: dict[str, Any]) -> None:
        """Before the server ever served: stop it with the message. After: keep what serves."""
        text = message.get("message", "worker failed")
        worker.failed = True
        if self.announced:
            # A worker of a reload since replaced by another (a file saved again) ends only itself.
            if self.reload_slots and worker.generation == self.generation:
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
                self.reload()
            elif signum == signal.SIGTTIN:
                self.add_slot()
            elif signum == signal.SIGTTOU:
                self.remove_slot()

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

    def reload(self, cause: str | None = None) -> None:
        """HUP, the admin API or --reload (`cause`: the files changed): replace every worker, one
        slot at a time."""
        why = f"{cause}; " if cause else ""
        log.info("reloading: %sreplacing %d worker(s) one by one", why, self.slots)
        self.generation += 1
        self.reloads += 1
        self.reload_slots = list(range(self.slots))
        self._event("reload-started", f"reload {self.reloads}: {why}{self.slots} slot(s)")

    def add_slot(self) -> None:
        """TTIN (or the admin API): one worker more."""
        self.slot_sockets.append(self._bind_slot())
        self.slots_added += 1
        log.info("adding a worker: %d slot(s)", self.slots)
        self._event("worker-added", f"one worker more: {self.slots} slot(s)")

    def remove_slot(self) -> bool:
        """TTOU (or the admin API): one worker less, never the last."""
        if self.slots <= 1:
            log.info("not removing the last worker")
            return False
        slot = self.slots - 1
        shared = self._shared.values()
        for sock in self.slot_sockets.pop():
            if sock not in shared:
                sock.close()
        self.reload_slots = [s for s in self.reload_slots if s != slot]
        for worker in self._workers_in(slot):
            self._retire(worker, "removed")
        self.slots_removed += 1
        log.info("removing a worker: %d slot(s)", self.slots)
        self._event("worker-removed", f"one worker less: {self.slots} slot(s)")
        return True

    def drain_worker(self, pid: int) -> bool:
        """The admin API: retire this worker (it finishes its streams); a new one takes its slot."""
        worker = self.workers.get(pid)
        if worker is None or worker.retiring:
            return False
        self.respawns["drain"] += 1
        worker.retiring = True
        worker.leaving_for = "drain"
        if worker.commands is None or not worker.commands.send(0, "drain"):
            self._kill(pid, signal.SIGUSR2)
        self._event("worker-drained", f"worker {pid} drained by an operator", worker)
        return True

    @property
    def slots(self) -> int:
        return len(self.slot_sockets)

    def _bind_slot(self) -> list[socket.socket]:
        """One slot's listening sockets, in listener order: a new member of each TCP address's
        SO_REUSEPORT group (the first claims the port, so a second osmium, or the same address
        given twice, is refused), and the one socket of each unix path or descriptor."""
        sockets = []
        for index, address in enumerate(self.listen):
            if address.kind == "tcp":
                if index not in self._ports:
                    self._ports[index] = claim_port(address.host, address.port)
                port = self._ports[index]
                sockets.append(bind_listener(address.host, port, self.config.backlog))
                continue
            if index not in self._shared:
                self._shared[index] = (
                    bind_unix_listener(address.path, self.config.backlog, self.config.socket_mode)
                    if address.kind == "unix"
                    else adopt_listener(address.fd)
                )
            sockets.append(self._shared[index])
        return sockets

    def live_workers(self) -> list[WorkerHandle]:
        return list(self.workers.values())

    def served_requests(self) -> int:
        """Requests of the workers that have exited."""
        return self.served["requests"]

    # -- reap, murder, manage --------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.admin is not None and self.admin.reaped(pid):
                continue
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._on_worker_exit(worker, os.waitstatus_to_exitcode(status))

    def _on_worker_exit(self, worker: WorkerHandle, code: int) -> None:
        self._read_reports(worker)  # a last report (fatal, final stats) may still be in the pipe
        worker.reader.close()
        if worker.commands is not None:
            worker.commands.close()
        for name in SUMMED_COUNTERS:
            self.served[name] += worker.stats.get(name, 0)
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        cause = "stop" if self.stopping else worker.leaving_for or "crash"
        self._event(
            "worker-exited", f"worker {worker.pid} (slot {worker.slot}) exited: {cause}, {how}",
            worker, cause=cause,
        )  # fmt: skip
        if self.stopping or worker.retiring:
            return
        if worker.ready:
            self.respawns[cause if cause == "timeout" else "crash"] += 1
            log.warning("worker %d (slot %d) died (%s); restarting", worker.pid, worker.slot, how)
            return
        if self._workers_in(worker.slot):
            # A reload's new worker failed; the slot's current worker goes on serving.
            if not worker.failed:
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
                worker.leaving_for = "timeout"
                self._kill(worker.pid, signal.SIGKILL)
                worker.last_seen = now  # one kill per timeout; reaping takes it from here

    def _manage(self) -> None:
        now = time.monotonic()
        for slot in range(self.slots):
            if not self._workers_in(slot) and self.restart_at.get(slot, 0.0) <= now:
                self.restart_at.pop(slot, None)
                self._spawn(slot)
        self._continue_reload()
        if not self.announced and all(
            any(w.ready for w in self._workers_in(slot)) for slot in range(self.slots)
        ):
            self.announced = True
            log.info("listening on %s (%d worker(s))", self.url, self.slots)
            if self.admin is not None:
                self.admin.announce()

    def _continue_reload(self) -> None:
        """Replace the first slot still on the old code: spawn, wait until ready, retire the old."""
        while self.reload_slots:
            slot = self.reload_slots[0]
            current = [w for w in self._workers_in(slot) if w.generation == self.generation]
            if not current:
                if self.restart_at.get(slot, 0.0) <= time.monotonic():
                    self.restart_at.pop(slot, None)
                    self.respawns["reload"] += 1
                    self._spawn(slot)
                return
            if not any(w.ready for w in current):
                return
            for worker in self._workers_in(slot):
                if worker.generation < self.generation:
                    self._retire(worker, "reload")
            self.reload_slots.pop(0)
            self._event("reload-step", f"slot {slot} replaced", slot=slot)
            if not self.reload_slots:
                self._event("reload-done", f"reload {self.reloads} done")

    def _workers_in(self, slot: int) -> list[WorkerHandle]:
        return [w for w in self.workers.values() if w.slot == slot and not w.retiring]

    def _retire(self, worker: WorkerHandle, reason: str) -> None:
        """USR2: the worker stops accepting and leaves once its connections went idle."""
        worker.retiring = True
        worker.leaving_for = reason
        self._kill(worker.pid, signal.SIGUSR2)

    # -- processes -------------------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        report_read, report_write = os.pipe()
        command_read, command_write = os.pipe() if self.admin is not None else (None, None)
        # Until the child has its own handlers, a signal for it (a stop) would run a copy of the
        # acceptor's handler and be lost; blocked, it waits for them (see _prepare_child).
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        pid = os.fork()
        if pid == 0:
            os.close(report_read)
            if command_write is not None:
                os.close(command_write)
            self._become_worker(slot, report_write, command_read)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        os.close(report_write)
        commands = None
        if command_read is not None and command_write is not None:
            os.close(command_read)
            commands = CommandWriter(command_write)
        now = time.monotonic()
        self.workers[pid] = WorkerHandle(
            pid, slot, self.generation, ReportReader(report_read), now, commands
        )
        log.debug("worker %d started for slot %d", pid, slot)
        self._event("worker-spawned", f"worker {pid} started (slot {slot})", self.workers[pid])

    def _prepare_child(self, keep: list[socket.socket] | None = None) -> None:
        """In a forked child: the signals a worker handles its own way, and none of the acceptor's
        descriptors but the listening sockets in `keep`."""
        reset_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        os.close(self._wakeup_read)
        os.close(self._wakeup_write)
        for worker in self.workers.values():
            os.close(worker.reader.fd)
            if worker.commands is not None:
                os.close(worker.commands.fd)
        kept = keep or []
        for sock in self._all_sockets():
            if not any(sock is mine for mine in kept):
                sock.close()
        if self.admin is not None and keep is not None:
            self.admin.close_in_child()
        if self.reloader is not None:
            self.reloader.close_in_child()

    def _become_worker(self, slot: int, report_write: int, command_read: int | None) -> None:
        """In the forked child: drop the acceptor's resources, serve, and never return."""
        status = 1
        try:
            sockets = self.slot_sockets[slot]
            self._prepare_child(sockets)
            pairs = zip(sockets, self.listen, strict=True)
            listeners = [(sock, address.tls) for sock, address in pairs]
            status = run_worker(self.config, listeners, report_write, slot, command_read)
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

    def _all_sockets(self) -> list[socket.socket]:
        """Every listening socket once: the slots' and the shared ones."""
        shared = list(self._shared.values())
        slots = self.slot_sockets
        return shared + [sock for sockets in slots for sock in sockets if sock not in shared]

    def _close_sockets(self) -> None:
        """Stop listening; unix socket files we made go with their sockets."""
        for sock in self._all_sockets():
            sock.close()
        for index, address in enumerate(self.listen):
            if address.kind == "unix" and index in self._shared:
                with contextlib.suppress(OSError):
                    os.unlink(address.path)
