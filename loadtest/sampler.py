"""Samples a whole server process tree (acceptor, workers, respawned workers) with psutil.

Runs in its own process so sampling never competes with the load generator's bookkeeping:
`python -m loadtest.sampler --root PID --output FILE [--interval 0.1]`, stopped with SIGTERM.
Each line of FILE is one JSON sample: per process, and summed over the tree. `tree_cpu_seconds`
gives the tree's CPU time so far, for rates per CPU second between two readings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

INTERVAL = 0.1
STARTUP_TIMEOUT = 10.0
SUMMED = ("cpu_percent", "rss", "uss", "threads", "fds", "tcp_connections", "ctx_voluntary",
          "ctx_involuntary")  # fmt: skip


class TreeSampler:
    """Keeps one psutil.Process per pid so cpu_percent measures the time since the last sample."""

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self._known: dict[int, psutil.Process] = {}
        self._started = time.monotonic()

    def _tree(self) -> list[psutil.Process]:
        processes = [self.root, *self.root.children(recursive=True)]
        current = {}
        for process in processes:
            current[process.pid] = self._known.get(process.pid, process)
        self._known = current
        return list(current.values())

    def sample(self) -> dict[str, Any]:
        rows = []
        for process in self._tree():
            try:
                rows.append(self._measure(process))
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue  # it exited between listing and measuring
        totals = {name: sum(row[name] for row in rows) for name in SUMMED}
        elapsed = round(time.monotonic() - self._started, 4)
        return {"t": elapsed, "processes": rows, "total": totals}

    def _measure(self, process: psutil.Process) -> dict[str, Any]:
        with process.oneshot():
            memory = process.memory_full_info()
            switches = process.num_ctx_switches()
            return {
                "pid": process.pid,
                "role": "acceptor" if process.pid == self.root.pid else "worker",
                "cpu_percent": process.cpu_percent(None),
                "rss": memory.rss,
                "uss": memory.uss,
                "threads": process.num_threads(),
                "fds": process.num_fds(),
                "tcp_connections": len(process.net_connections(kind="tcp")),
                "ctx_voluntary": switches.voluntary,
                "ctx_involuntary": switches.involuntary,
            }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process tree has used so far: its live processes (workers
    forked later included once they exist) and the children each has reaped, so a worker that
    exited between two readings still counts."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # exited since the listing
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def run(root_pid: int, output: Path, interval: float) -> None:
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    sampler = TreeSampler(root_pid)
    next_at = time.monotonic()
    with output.open("w") as out:
        while not stopping:
            try:
                out.write(json.dumps(sampler.sample()) + "\n")
            except psutil.NoSuchProcess:
                return  # the server is gone
            out.flush()
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class SamplerProcess:
    """The sampler as a child process, for `with SamplerProcess(pid, path): ...`."""

    def __init__(self, root_pid: int, output: Path, interval: float = INTERVAL) -> None:
        self.command = [
            sys.executable, "-m", "loadtest.sampler", "--root", str(root_pid),
            "--output", str(output), "--interval", str(interval),
        ]  # fmt: skip
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SamplerProcess:
        self.process = subprocess.Popen(self.command)
        # The load starts only once the baseline sample is on disk.
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not (self.output.exists() and self.output.stat().st_size):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sampler did not start: {' '.join(self.command)}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=int, required=True, help="pid of the server's root process")
    parser.add_argument("--output", type=Path, required=True, help="JSON-lines file to write")
    parser.add_argument("--interval", type=float, default=INTERVAL, help="seconds between samples")
    arguments = parser.parse_args(argv)
    try:
        run(arguments.root, arguments.output, arguments.interval)
    except psutil.NoSuchProcess:
        print(f"sampler: no process {arguments.root}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
