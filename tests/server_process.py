"""Start osmium as a real child process and find where it listens.

Tests never guess ports: the server binds port 0 and we read the address from its startup line.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: The acceptor's "listening on URL, URL... (N worker(s))" line; the first URL is the server's
#: (a unix socket first: no scheme, host or port).
LISTENING = re.compile(
    r"listening on (?:(?P<scheme>https?)://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+)|unix:)"
)
#: Every listener in that line.
LISTENER = re.compile(r"(https?://(?:\[[^\]]+\]|[^:/]+):\d+|unix:[^\s,]+)")
STARTUP_DEADLINE = 20.0


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    scheme: str = ""
    host: str = ""
    port: int = 0
    lines: list[str] = field(default_factory=list)
    _line_queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def listeners(self) -> list[str]:
        """Every listener's URL (or unix:PATH) from the acceptor's "listening on" line."""
        line = next(line for line in self.lines if LISTENING.search(line))
        return LISTENER.findall(line.split("listening on ", 1)[1])

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Block until the server prints a line matching `pattern` (already printed lines count)."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if match := compiled.search(line):
                    return match
            seen = len(self.lines)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line matching {pattern!r}; output:\n{self.output}")
            try:
                self._line_queue.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                if self.process.poll() is not None and self._line_queue.empty():
                    raise RuntimeError(f"server exited; output:\n{self.output}") from None

    def worker_pids(self) -> list[int]:
        """The acceptor's children: its worker processes, right now."""
        pid = self.process.pid
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]

    def rss_bytes(self) -> int:
        """Resident memory of the whole server: the acceptor plus every worker."""
        return sum(_rss_bytes(pid) for pid in [self.process.pid, *self.worker_pids()])

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the acceptor and its live workers."""
        return sum(_cpu_seconds(pid) for pid in [self.process.pid, *self.worker_pids()])

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if the server does not exit in time; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass  # the process exited between listing and reading: it holds no memory now
    return 0


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except FileNotFoundError:
        return 0.0  # exited between listing and reading
    # utime and stime are fields 14 and 15 of proc(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pump_output(server: ServerProcess) -> None:
    assert server.process.stdout is not None
    for line in server.process.stdout:
        server.lines.append(line)
        server._line_queue.put(line)
    server._line_queue.put(None)


def osmium_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "osmium", *args]


@contextmanager
def running_server(
    *args: str,
    app: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    new_session: bool = False,
    pass_fds: tuple[int, ...] = (),
    command: str = "serve",
) -> Iterator[ServerProcess]:
    """`osmium serve [app] --bind 127.0.0.1:0 *args`, yielded once it listens, then stopped
    (without that --bind when `args` say where to listen: several --bind are several listeners).

    `new_session`: the server leads its own process group, which a test may signal as a whole
    (as a terminal's Ctrl-C does) without hitting pytest. `pass_fds`: descriptors it inherits
    (a listening socket for --fd, as systemd hands one over). `command` "": `osmium [app] ...`.
    """
    listens = any(arg in ("--bind", "--fd", "--host", "--port") for arg in args)
    bind = () if listens else ("--bind", "127.0.0.1:0")
    argv = osmium_command(*([command] if command else []), *([app] if app else []), *bind, *args)
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env,
        cwd=cwd,
        start_new_session=new_session,
        pass_fds=pass_fds,
    )
    server = ServerProcess(process)
    threading.Thread(target=pump_output, args=(server,), daemon=True).start()
    try:
        match = server.wait_for_line(LISTENING.pattern, timeout=STARTUP_DEADLINE)
        server.scheme = match["scheme"] or ""
        server.host = match["host"] or ""
        server.port = int(match["port"] or 0)
        yield server
    finally:
        server.stop()
